#include "hook_invocation.h"

#include <sys/stat.h>

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <charconv>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>

namespace ferry::ocihook {

namespace {

using Value = rapidjson::Value;

Error fieldError(std::string_view field, std::string_view problem)
{
	return makeError(std::string(field) + ": " + std::string(problem), EINVAL);
}

Result<std::chrono::milliseconds> parseTimeout(std::string_view text, std::string_view name)
{
	uint64_t ms = 0;
	auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
	if (text.empty() || ec != std::errc() || end != text.data() + text.size() || ms < 1 ||
	    ms > static_cast<uint64_t>(kMaxTimeout.count()))
		return fieldError(name, "expected an integer 1.." + std::to_string(kMaxTimeout.count()) + ", got '" +
						std::string(text) + "'");
	return std::chrono::milliseconds(ms);
}

Result<container::Runtime> parseRuntimeField(std::string_view text, std::string_view name)
{
	auto runtime = container::parseRuntime(text);
	if (!runtime)
		return fieldError(name, "expected runc or podman, got '" + std::string(text) + "'");
	return *runtime;
}

Result<rapidjson::Document> parseJson(std::string_view json, std::string_view what)
{
	rapidjson::Document doc;
	doc.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(json.data(), json.size());
	if (doc.HasParseError())
		return makeError(std::string(what) + ": not valid JSON at offset " + std::to_string(doc.GetErrorOffset()) +
					 ": " + rapidjson::GetParseError_En(doc.GetParseError()),
				 EINVAL);
	if (!doc.IsObject())
		return makeError(std::string(what) + ": expected a JSON object", EINVAL);
	return doc;
}

Result<std::string> stringOf(const Value &v, std::string_view name)
{
	if (!v.IsString())
		return fieldError(name, "expected string");
	std::string s(v.GetString(), v.GetStringLength());
	if (s.find('\0') != std::string::npos)
		return fieldError(name, "string contains a NUL character");
	return s;
}

Result<HookSettings> loadHookConfig(const std::string &path, HookSettings base)
{
	std::ifstream in(path, std::ios::binary);
	if (!in)
		return errnoError("cannot open the hook config").at("file", path);
	std::ostringstream text;
	text << in.rdbuf();
	auto settings = parseHookConfig(text.str(), std::move(base));
	if (!settings)
		return std::move(settings).error().at("file", path);
	return settings;
}

// One command-line option and what it sets.
struct Option {
	const char *name;
	Status (*apply)(HookSettings &settings, std::string_view value);
};

const Option kOptions[] = {
	{"agent",
	 [](HookSettings &s, std::string_view v) -> Status {
		 if (v.empty())
			 return fieldError("--agent", "must not be empty");
		 s.agentUrl = v;
		 return {};
	 }},
	{"token-file",
	 [](HookSettings &s, std::string_view v) -> Status {
		 s.tokenFile = v;
		 return {};
	 }},
	{"ca-file",
	 [](HookSettings &s, std::string_view v) -> Status {
		 s.caFile = v;
		 return {};
	 }},
	{"cert-file",
	 [](HookSettings &s, std::string_view v) -> Status {
		 s.certFile = v;
		 return {};
	 }},
	{"key-file",
	 [](HookSettings &s, std::string_view v) -> Status {
		 s.keyFile = v;
		 return {};
	 }},
	{"runtime",
	 [](HookSettings &s, std::string_view v) -> Status {
		 FERRY_TRY_ASSIGN(s.runtime, parseRuntimeField(v, "--runtime"));
		 return {};
	 }},
	{"timeout-ms",
	 [](HookSettings &s, std::string_view v) -> Status {
		 FERRY_TRY_ASSIGN(s.timeout, parseTimeout(v, "--timeout-ms"));
		 return {};
	 }},
};

std::string baseName(std::string_view path)
{
	size_t slash = path.rfind('/');
	return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

} // namespace

const char *toString(Stage stage)
{
	return stage == Stage::Poststart ? "poststart" : "poststop";
}

std::optional<Stage> parseStage(std::string_view name)
{
	if (name == "poststart")
		return Stage::Poststart;
	if (name == "poststop")
		return Stage::Poststop;
	return std::nullopt;
}

Environment processEnvironment()
{
	return [](const char *name) -> std::optional<std::string> {
		const char *value = std::getenv(name);
		if (!value)
			return std::nullopt;
		return std::string(value);
	};
}

Result<HookSettings> parseHookConfig(std::string_view json, HookSettings base)
{
	FERRY_TRY_ASSIGN(rapidjson::Document parsed, parseJson(json, "hook config"));
	// Const iterators: RapidJSON's mutable ones compare ambiguously in C++20.
	const Value &doc = parsed;
	static const std::set<std::string_view> kKnown = {"agent_url", "token_file", "ca_file", "cert_file",
							   "key_file",  "runtime",    "timeout_ms"};
	std::set<std::string_view> seen;
	for (auto it = doc.MemberBegin(); it != doc.MemberEnd(); ++it) {
		std::string_view name(it->name.GetString(), it->name.GetStringLength());
		const Value &f = it->value;
		if (!kKnown.count(name))
			return fieldError(name, "unknown field");
		if (!seen.insert(name).second)
			return fieldError(name, "duplicate field");
		if (name == "timeout_ms") {
			if (!f.IsUint64() || f.GetUint64() < 1 || f.GetUint64() > static_cast<uint64_t>(kMaxTimeout.count()))
				return fieldError(name, "expected an integer 1.." + std::to_string(kMaxTimeout.count()));
			base.timeout = std::chrono::milliseconds(f.GetUint64());
			continue;
		}
		FERRY_TRY_ASSIGN(std::string value, stringOf(f, name));
		if (name == "agent_url") {
			if (value.empty())
				return fieldError(name, "must not be empty");
			base.agentUrl = std::move(value);
		} else if (name == "token_file") {
			base.tokenFile = std::move(value);
		} else if (name == "ca_file") {
			base.caFile = std::move(value);
		} else if (name == "cert_file") {
			base.certFile = std::move(value);
		} else if (name == "key_file") {
			base.keyFile = std::move(value);
		} else {
			FERRY_TRY_ASSIGN(base.runtime, parseRuntimeField(value, name));
		}
	}
	return base;
}

Result<HookArguments> parseHookArguments(int argc, const char *const *argv, const Environment &env)
{
	HookArguments out;
	struct Pending {
		const Option *option;
		std::string value;
	};
	std::vector<Pending> pending;
	std::optional<std::string> configFile;
	auto setStage = [&](std::string_view word) -> Status {
		auto stage = parseStage(word);
		if (out.stage && stage != out.stage)
			return makeError("two stages given: " + std::string(toString(*out.stage)) + " and " + std::string(word),
					 EINVAL);
		out.stage = stage;
		return {};
	};
	// An args array that forgot the program name puts the stage in argv[0].
	if (argc > 0 && argv[0] && parseStage(baseName(argv[0])))
		FERRY_TRY(setStage(baseName(argv[0])));

	for (int i = 1; i < argc; ++i) {
		std::string_view arg = argv[i];
		if (arg == "--help" || arg == "-h") {
			out.help = true;
			continue;
		}
		if (parseStage(arg)) {
			FERRY_TRY(setStage(arg));
			continue;
		}
		if (arg.substr(0, 2) != "--")
			return makeError("unexpected argument '" + std::string(arg) + "' (expected poststart or poststop)",
					 EINVAL);
		std::string_view name = arg.substr(2);
		std::optional<std::string> value;
		if (size_t eq = name.find('='); eq != std::string_view::npos) {
			value = std::string(name.substr(eq + 1));
			name = name.substr(0, eq);
		}
		if (!value) {
			if (i + 1 >= argc)
				return makeError("--" + std::string(name) + " needs a value", EINVAL);
			value = std::string(argv[++i]);
		}
		if (name == "config") {
			configFile = *value;
			continue;
		}
		const Option *option = nullptr;
		for (const Option &o : kOptions) {
			if (name == o.name)
				option = &o;
		}
		if (!option)
			return makeError("unknown option '--" + std::string(name) + "'", EINVAL);
		pending.push_back({option, std::move(*value)});
	}
	if (out.help)
		return out;

	if (!configFile)
		configFile = env("FERRY_HOOK_CONFIG");
	if (configFile) {
		FERRY_TRY_ASSIGN(out.settings, loadHookConfig(*configFile, out.settings));
		out.configFile = *configFile;
	} else {
		struct stat st{};
		if (::stat(kDefaultConfigFile, &st) == 0) {
			FERRY_TRY_ASSIGN(out.settings, loadHookConfig(kDefaultConfigFile, out.settings));
			out.configFile = kDefaultConfigFile;
		}
	}
	if (auto url = env("FERRY_AGENT_URL"); url && !url->empty())
		out.settings.agentUrl = *url;
	if (auto token = env("FERRY_TOKEN_FILE"))
		out.settings.tokenFile = *token;
	for (const Pending &p : pending)
		FERRY_TRY(p.option->apply(out.settings, p.value));
	return out;
}

std::string hookUsage()
{
	return "Usage: ferry-oci-hook [--agent URL] [--token-file FILE] [--ca-file FILE] [--cert-file FILE]\n"
	       "                      [--key-file FILE] [--runtime runc|podman] [--timeout-ms N] [--config FILE]\n"
	       "                      [poststart|poststop] < OCI-STATE\n"
	       "Registers a container annotated io.ferry.migratable=true with the local ferryd at poststart\n"
	       "and deregisters it at poststop. Always exits 0: a hook that fails would fail the container.\n"
	       "Without a stage, the state's status decides (\"stopped\": poststop). See docs/oci-hook.md.\n";
}

Result<OciState> parseOciState(std::string_view json)
{
	if (json.size() > kMaxStateBytes)
		return makeError("state: larger than " + std::to_string(kMaxStateBytes) + " bytes", E2BIG);
	FERRY_TRY_ASSIGN(rapidjson::Document parsed, parseJson(json, "state"));
	const Value &doc = parsed;
	OciState state;
	auto text = [&](const char *name, std::string &into, bool required) -> Status {
		auto it = doc.FindMember(name);
		if (it == doc.MemberEnd())
			return required ? fieldError(std::string("state.") + name, "missing") : Status{};
		FERRY_TRY_ASSIGN(into, stringOf(it->value, std::string("state.") + name));
		return {};
	};
	FERRY_TRY(text("ociVersion", state.ociVersion, false));
	FERRY_TRY(text("id", state.id, true));
	FERRY_TRY(text("status", state.status, true));
	FERRY_TRY(text("bundle", state.bundle, false));
	if (state.id.empty())
		return fieldError("state.id", "must not be empty");
	auto pid = doc.FindMember("pid");
	if (pid != doc.MemberEnd()) {
		// A stopped container may report pid 0.
		if (!pid->value.IsInt() || pid->value.GetInt() < 0)
			return fieldError("state.pid", "expected a positive integer");
		state.pid = pid->value.GetInt();
	}
	if (state.status != "stopped" && state.pid <= 0)
		return fieldError("state.pid", "missing for a container that is " + state.status);
	auto annotations = doc.FindMember("annotations");
	if (annotations != doc.MemberEnd()) {
		if (!annotations->value.IsObject())
			return fieldError("state.annotations", "expected an object of strings");
		for (auto a = annotations->value.MemberBegin(); a != annotations->value.MemberEnd(); ++a) {
			std::string key(a->name.GetString(), a->name.GetStringLength());
			FERRY_TRY_ASSIGN(std::string value, stringOf(a->value, "state.annotations." + key));
			state.annotations[key] = std::move(value);
		}
	}
	return state;
}

Result<Stage> resolveStage(std::optional<Stage> given, const OciState &state)
{
	if (given)
		return *given;
	if (state.status == "stopped")
		return Stage::Poststop;
	if (state.status == "created" || state.status == "running")
		return Stage::Poststart;
	return makeError("no stage given and the state's status '" + state.status +
				 "' is neither created, running nor stopped",
			 EINVAL);
}

bool isMigratable(const OciState &state)
{
	auto it = state.annotations.find(std::string(container::kMigratableAnnotation));
	return it != state.annotations.end() && it->second == "true";
}

container::Runtime resolveRuntime(std::optional<container::Runtime> given, const OciState &state)
{
	if (given)
		return *given;
	auto manager = state.annotations.find("io.container.manager");
	if (manager != state.annotations.end() && manager->second == "libpod")
		return container::Runtime::Podman;
	return container::Runtime::Runc;
}

container::ContainerInfo registrationFor(const OciState &state, container::Runtime runtime)
{
	container::ContainerInfo info;
	info.runtime = runtime;
	info.id = state.id;
	info.name = state.id;
	info.pid = state.pid;
	info.status = "running";
	info.bundle = state.bundle;
	info.netns = "pid:" + std::to_string(state.pid);
	info.annotations = state.annotations;
	return info;
}

} // namespace ferry::ocihook
