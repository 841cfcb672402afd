// What one run of ferry-oci-hook is asked to do: its settings (built-in
// defaults, a config file, the environment, the command line), the OCI
// state the runtime writes on stdin, and the registration it derives.
//
// Pure parsing, apart from reading the config file: main.cpp does the I/O
// (stdin, the token file, HTTP) so that everything here is unit-tested.
//
// Settings, later ones winning:
//   1. built-in: agent http://127.0.0.1:7411, token /etc/ferry/token,
//      timeout 1000 ms, runtime guessed from the state;
//   2. the config file: --config FILE, else $FERRY_HOOK_CONFIG, else
//      /etc/ferry/hook.json when it exists (docs/oci-hook.md);
//   3. $FERRY_AGENT_URL, $FERRY_TOKEN_FILE;
//   4. --agent, --token-file, --ca-file, --cert-file, --key-file,
//      --runtime, --timeout-ms.
// Runtimes start hooks with the environment of the hook's "env" list only,
// not the runtime's own: 3 applies when that list sets them.
//
// The stage: a positional "poststart" or "poststop" anywhere on the line
// (the hook's `args` array is its whole argv, argv[0] included; an args
// array that starts with the stage is accepted too). Without one, as with
// a podman hooks.d file that serves both stages with the same args, the
// stage follows the state's status: "stopped" is poststop, "created" and
// "running" are poststart (runc reports "created" to poststart hooks).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "container/container.h"

namespace ferry::ocihook {

enum class Stage { Poststart, Poststop };
const char *toString(Stage stage);
std::optional<Stage> parseStage(std::string_view name);

inline constexpr const char *kDefaultAgentUrl = "http://127.0.0.1:7411";
inline constexpr const char *kDefaultTokenFile = "/etc/ferry/token";
inline constexpr const char *kDefaultConfigFile = "/etc/ferry/hook.json";
inline constexpr std::chrono::milliseconds kDefaultTimeout{1000};
// A hook holds up the container's start: never longer than this.
inline constexpr std::chrono::milliseconds kMaxTimeout{30000};
// The OCI state is a few hundred bytes; anything this large is not one.
inline constexpr size_t kMaxStateBytes = 1 << 20;

struct HookSettings {
	std::string agentUrl = kDefaultAgentUrl;
	std::string tokenFile = kDefaultTokenFile; // "" = send no token
	std::string caFile;                         // for an https agent; "" = the system's CAs
	std::string certFile;                       // client certificate, for an agent with mutual TLS
	std::string keyFile;                        // its key
	std::optional<container::Runtime> runtime;  // unset: guessed from the state
	std::chrono::milliseconds timeout = kDefaultTimeout; // stdin, connect and answer, in all
};

struct HookArguments {
	HookSettings settings;
	std::optional<Stage> stage; // unset: from the state's status
	bool help = false;
	std::string configFile;     // the file that was read, "" when none
};

// Reads the environment; tests pass a map.
using Environment = std::function<std::optional<std::string>(const char *name)>;
Environment processEnvironment();

// The config file's fields on top of `base`: "agent_url", "token_file",
// "ca_file", "cert_file", "key_file", "runtime", "timeout_ms". Strict: EINVAL naming the field for
// an unknown field, a wrong type, a bad runtime or a timeout outside
// 1..kMaxTimeout.
Result<HookSettings> parseHookConfig(std::string_view json, HookSettings base = {});

// The command line (argv[0] is the program, or the stage; see above).
// EINVAL for an unknown option, a missing value, two stages, a stray
// positional; a config file named by --config or $FERRY_HOOK_CONFIG that
// cannot be read is an error, the default one is read only if present.
Result<HookArguments> parseHookArguments(int argc, const char *const *argv, const Environment &env);
std::string hookUsage();

// The state a runtime writes on a hook's stdin (OCI runtime-spec,
// "State"). Unknown fields are ignored (newer spec versions add some);
// id and status are required, pid when the status is not "stopped" (a
// stopped container has none).
struct OciState {
	std::string ociVersion;
	std::string id;
	std::string status;
	pid_t pid = 0;
	std::string bundle;
	std::map<std::string, std::string> annotations;
};
Result<OciState> parseOciState(std::string_view json);

// The stage to act on: the given one, else from the status. EINVAL when
// the status says neither (e.g. "creating").
Result<Stage> resolveStage(std::optional<Stage> given, const OciState &state);

// io.ferry.migratable is exactly "true".
bool isMigratable(const OciState &state);

// The given runtime, else podman when the state carries podman's
// io.container.manager=libpod annotation, else runc.
container::Runtime resolveRuntime(std::optional<container::Runtime> given, const OciState &state);

// What poststart registers: id, runtime, pid, bundle, netns "pid:<pid>",
// name = id (neither runc nor podman 4 passes a name in the state), no
// cgroup (the agent finds the freezer cgroup from the pid when it needs
// it), the annotations. Precondition: state.pid > 0.
container::ContainerInfo registrationFor(const OciState &state, container::Runtime runtime);

} // namespace ferry::ocihook
