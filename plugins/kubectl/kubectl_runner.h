// KubectlRunner: how kubectl-ferry asks the cluster anything.
//
// kubectl-ferry does not speak to the Kubernetes API itself. It runs the
// user's own `kubectl`, with the user's kubeconfig, context and
// credentials, so that whatever works for `kubectl get` (exec credential
// plugins, OIDC, proxies, client certificates) works for the plugin too,
// and the plugin needs no Kubernetes client library.
//
// kubectl runs as a child process: no shell, an argv built here, stdin
// /dev/null, stdout and stderr captured, a time limit after which the
// child (and only it, by its pid) is killed. The binary is $KUBECTL when
// set and non-empty, else `kubectl` looked up in PATH.
//
// argv order, fixed so that tests can pin it down:
//   <binary> [--kubeconfig=FILE] [--context=NAME] <args...>
// The `--flag=value` form keeps a value that starts with '-' a value.
//
// Errors: a kubectl that exits non-zero becomes an Error whose text quotes
// its stderr (trimmed, at most kMaxQuotedStderr bytes) and whose code says
// what kind of failure it was, so that the command can choose an exit code:
//   ENOENT        the object does not exist (kubectl's NotFound)
//   EACCES        Forbidden / Unauthorized
//   ECONNREFUSED  the API server cannot be reached
//   EINVAL        kubectl refused the invocation (unknown context, bad flag)
//   ETIMEDOUT     kubectl did not finish within the time limit
//   0             anything else, and a kubectl that cannot be started
// The context names the command ("command=kubectl get pod web-0 ...").
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace ferry::kubectl {

inline constexpr const char *kKubectlEnvironmentVariable = "KUBECTL";
inline constexpr const char *kDefaultKubectl = "kubectl";
// `kubectl get` of one pod or one label selector: seconds at most, unless
// the API server is unreachable, which kubectl reports after its own
// timeouts (about 30 s per attempt).
inline constexpr std::chrono::milliseconds kKubectlTimeout{60000};
inline constexpr size_t kMaxQuotedStderr = 2000;

// kubectl's global flags that kubectl-ferry passes through unchanged.
// The namespace is not one of them: each call names its own (the pod's,
// or the agents').
struct KubectlGlobals {
	std::string kubeconfig; // --kubeconfig; "" = kubectl's default ($KUBECONFIG, ~/.kube/config)
	std::string context;    // --context; "" = the kubeconfig's current context
};

class KubectlRunner {
public:
	// `binary`: a path, or a name looked up in PATH.
	KubectlRunner(std::string binary, KubectlGlobals globals,
		      std::chrono::milliseconds timeout = kKubectlTimeout);

	const std::string &binary() const { return binary_; }
	const KubectlGlobals &globals() const { return globals_; }

	// The full argv that run(args) executes (argv[0] is the binary).
	std::vector<std::string> argv(const std::vector<std::string> &args) const;

	// Runs kubectl with `args` after the global flags; its stdout when it
	// exits 0, else an Error as described above.
	Result<std::string> run(const std::vector<std::string> &args) const;

private:
	std::string binary_;
	KubectlGlobals globals_;
	std::chrono::milliseconds timeout_;
};

// The binary a runner should use: $KUBECTL if set and non-empty, else
// "kubectl". `value` is the variable's value (nullptr: unset).
std::string kubectlBinary(const char *value);

// The errno that kubectl's stderr means (see the table above); 0 when it
// says nothing recognisable.
int classifyKubectlError(std::string_view stderrText);

} // namespace ferry::kubectl
