#include "agent_config.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

namespace ferry::api {

namespace {

Error fieldError(std::string_view field, std::string_view problem)
{
	return makeError(std::string(field) + ": " + std::string(problem), EINVAL);
}

// ---------------------------------------------------------------------------
// Field setters shared by the file and the flags: each takes the text or
// JSON value, and the name to blame.

Status setListen(AgentConfig &c, std::string_view text, std::string_view name)
{
	auto e = Endpoint::parse(text);
	if (!e)
		return fieldError(name, "expected \"address:port\" or \"[address]:port\" with an IP address, got '" +
						std::string(text) + "'");
	c.listen = *e;
	return {};
}

Result<uint64_t> parseUnsigned(std::string_view text, std::string_view name, uint64_t min, uint64_t max)
{
	uint64_t value = 0;
	auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
	if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value < min || value > max)
		return fieldError(name, "expected an integer " + std::to_string(min) + ".." + std::to_string(max) +
						", got '" + std::string(text) + "'");
	return value;
}

Result<bool> parseBool(std::string_view text, std::string_view name)
{
	if (text == "true" || text == "1" || text == "yes")
		return true;
	if (text == "false" || text == "0" || text == "no")
		return false;
	return fieldError(name, "expected true or false, got '" + std::string(text) + "'");
}

Result<Cidr> parseRange(std::string_view text, std::string_view name)
{
	auto cidr = Cidr::parse(text, Cidr::HostBits::MustBeZero);
	if (!cidr)
		return fieldError(name, cidr.error().what);
	return *cidr;
}

// A runtime binary: a name looked up in PATH or a path; never empty (the
// runtime's default is the field's default, not "").
Status checkBinary(std::string_view value, std::string_view name)
{
	if (value.empty())
		return fieldError(name, "must not be empty (leave the field out for the default)");
	return {};
}

// A runtime state root: empty (the runtime's own default) or absolute, so
// that it means the same whatever ferryd's working directory.
Status checkRoot(std::string_view value, std::string_view name)
{
	if (!value.empty() && value.front() != '/')
		return fieldError(name, "expected an absolute path, got '" + std::string(value) + "'");
	return {};
}

// ---------------------------------------------------------------------------
// The JSON file

using Value = rapidjson::Value;

class FileReader {
public:
	explicit FileReader(AgentConfig &config) : c_(config) {}

	Status top(const Value &v)
	{
		FERRY_TRY(object(v, "", {"listen", "state_dir", "tls", "token_file", "allow", "limits",
					 "insecure_plain_http", "log", "advertise_url", "handoff_socket", "lock_strategy",
					 "runtimes"}));
		for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
			std::string name(it->name.GetString(), it->name.GetStringLength());
			const Value &f = it->value;
			if (name == "listen") {
				FERRY_TRY_ASSIGN(std::string text, string(f, name));
				FERRY_TRY(setListen(c_, text, name));
			} else if (name == "state_dir") {
				FERRY_TRY_ASSIGN(c_.stateDir, string(f, name));
				if (c_.stateDir.empty())
					return fieldError(name, "must not be empty");
			} else if (name == "tls") {
				FERRY_TRY(tls(f));
			} else if (name == "token_file") {
				FERRY_TRY_ASSIGN(c_.tokenFile, string(f, name));
			} else if (name == "allow") {
				FERRY_TRY(allow(f));
			} else if (name == "limits") {
				FERRY_TRY(limits(f));
			} else if (name == "insecure_plain_http") {
				if (!f.IsBool())
					return fieldError(name, "expected true or false");
				c_.insecurePlainHttp = f.GetBool();
			} else if (name == "log") {
				FERRY_TRY_ASSIGN(c_.log, string(f, name));
			} else if (name == "advertise_url") {
				FERRY_TRY_ASSIGN(c_.advertiseUrl, string(f, name));
			} else if (name == "handoff_socket") {
				FERRY_TRY_ASSIGN(c_.handoffSocket, string(f, name));
			} else if (name == "lock_strategy") {
				FERRY_TRY_ASSIGN(c_.lockStrategy, string(f, name));
			} else if (name == "runtimes") {
				FERRY_TRY(runtimes(f));
			}
		}
		return {};
	}

private:
	static Status object(const Value &v, std::string_view path, std::initializer_list<std::string_view> known)
	{
		if (!v.IsObject())
			return fieldError(path.empty() ? "config" : path, "expected object");
		std::set<std::string_view> seen;
		for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
			std::string_view name(it->name.GetString(), it->name.GetStringLength());
			std::string full = path.empty() ? std::string(name) : std::string(path) + "." + std::string(name);
			if (std::find(known.begin(), known.end(), name) == known.end())
				return fieldError(full, "unknown field");
			if (!seen.insert(name).second)
				return fieldError(full, "duplicate field");
		}
		return {};
	}

	static Result<std::string> string(const Value &v, std::string_view name)
	{
		if (!v.IsString())
			return fieldError(name, "expected string");
		std::string s(v.GetString(), v.GetStringLength());
		if (s.find('\0') != std::string::npos)
			return fieldError(name, "string contains a NUL character");
		return s;
	}

	static Result<std::vector<std::string>> strings(const Value &v, const std::string &name)
	{
		if (!v.IsArray())
			return fieldError(name, "expected array of strings");
		std::vector<std::string> out;
		for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
			FERRY_TRY_ASSIGN(std::string s, string(v[i], name + "[" + std::to_string(i) + "]"));
			out.push_back(std::move(s));
		}
		return out;
	}

	static Result<uint64_t> unsignedField(const Value &v, std::string_view name, uint64_t min, uint64_t max)
	{
		if (!v.IsUint64() || v.GetUint64() < min || v.GetUint64() > max)
			return fieldError(name, "expected an integer " + std::to_string(min) + ".." + std::to_string(max));
		return v.GetUint64();
	}

	Status tls(const Value &v)
	{
		FERRY_TRY(object(v, "tls", {"cert", "key", "client_ca"}));
		for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
			std::string name(it->name.GetString(), it->name.GetStringLength());
			std::string full = "tls." + name;
			FERRY_TRY_ASSIGN(std::string s, string(it->value, full));
			(name == "cert" ? c_.tlsCert : name == "key" ? c_.tlsKey : c_.clientCa) = std::move(s);
		}
		return {};
	}

	Status allow(const Value &v)
	{
		FERRY_TRY(object(v, "allow", {"netns", "interfaces", "addresses"}));
		for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
			std::string name(it->name.GetString(), it->name.GetStringLength());
			std::string full = "allow." + name;
			FERRY_TRY_ASSIGN(auto list, strings(it->value, full));
			if (name == "netns") {
				c_.allow.netns = std::move(list);
			} else if (name == "interfaces") {
				c_.allow.interfaces = std::move(list);
			} else {
				c_.allow.addresses.clear();
				for (size_t i = 0; i < list.size(); ++i) {
					FERRY_TRY_ASSIGN(Cidr cidr, parseRange(list[i], full + "[" + std::to_string(i) + "]"));
					c_.allow.addresses.push_back(cidr);
				}
			}
		}
		return {};
	}

	Status limits(const Value &v)
	{
		FERRY_TRY(object(v, "limits", {"max_concurrent_migrations", "max_image_bytes", "commit_timeout_ms",
					       "max_request_body_bytes"}));
		for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
			std::string name(it->name.GetString(), it->name.GetStringLength());
			std::string full = "limits." + name;
			if (name == "max_concurrent_migrations") {
				FERRY_TRY_ASSIGN(uint64_t n, unsignedField(it->value, full, 1, 100000));
				c_.limits.maxConcurrentMigrations = static_cast<uint32_t>(n);
			} else if (name == "max_image_bytes") {
				FERRY_TRY_ASSIGN(c_.limits.maxImageBytes, unsignedField(it->value, full, 1, UINT64_MAX));
			} else if (name == "commit_timeout_ms") {
				FERRY_TRY_ASSIGN(uint64_t ms, unsignedField(it->value, full, 1, 86400000));
				c_.limits.commitTimeout = std::chrono::milliseconds(ms);
			} else {
				FERRY_TRY_ASSIGN(c_.limits.maxRequestBodyBytes, unsignedField(it->value, full, 1024, UINT64_MAX));
			}
		}
		return {};
	}

	Status runtimes(const Value &v)
	{
		FERRY_TRY(object(v, "runtimes", {"runc_binary", "runc_root", "podman_binary", "podman_root",
						 "podman_runroot", "podman_run_args", "podman_global_args"}));
		container::RuntimeOptions &r = c_.runtimes;
		for (auto it = v.MemberBegin(); it != v.MemberEnd(); ++it) {
			std::string name(it->name.GetString(), it->name.GetStringLength());
			std::string full = "runtimes." + name;
			if (name == "podman_run_args") {
				FERRY_TRY_ASSIGN(r.podmanExtraArgs, strings(it->value, full));
				continue;
			}
			if (name == "podman_global_args") {
				FERRY_TRY_ASSIGN(r.podmanGlobalArgs, strings(it->value, full));
				continue;
			}
			FERRY_TRY_ASSIGN(std::string s, string(it->value, full));
			if (name == "runc_binary" || name == "podman_binary") {
				FERRY_TRY(checkBinary(s, full));
				(name == "runc_binary" ? r.runcBinary : r.podmanBinary) = std::move(s);
			} else {
				FERRY_TRY(checkRoot(s, full));
				(name == "runc_root" ? r.runcRoot : name == "podman_root" ? r.podmanRoot : r.podmanRunRoot) =
					std::move(s);
			}
		}
		return {};
	}

	AgentConfig &c_;
};

// ---------------------------------------------------------------------------
// The flags

struct Flag {
	const char *name;
	const char *value; // placeholder in --help; nullptr for a boolean
	const char *help;
	std::function<Status(AgentConfig &, std::string_view, bool first)> apply;
};

const std::vector<Flag> &flags()
{
	static const std::vector<Flag> table = {
		{"listen", "ADDR:PORT", "address to serve the API on; port 0 picks a free port (127.0.0.1:7411)",
		 [](AgentConfig &c, std::string_view v, bool) { return setListen(c, v, "--listen"); }},
		{"state-dir", "DIR", "directory for the migration journal (/var/lib/ferry)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 if (v.empty())
				 return fieldError("--state-dir", "must not be empty");
			 c.stateDir = v;
			 return {};
		 }},
		{"tls-cert", "FILE", "PEM server certificate; with --tls-key, serve HTTPS",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 c.tlsCert = v;
			 return {};
		 }},
		{"tls-key", "FILE", "PEM private key of --tls-cert",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 c.tlsKey = v;
			 return {};
		 }},
		{"client-ca", "FILE", "PEM CA; clients must present a certificate it signed (mutual TLS)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 c.clientCa = v;
			 return {};
		 }},
		{"token-file", "FILE", "file holding the bearer token every request must carry",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 c.tokenFile = v;
			 return {};
		 }},
		{"allow-netns", "PATTERN", "target netns this agent may restore into (repeatable; replaces the file's list)",
		 [](AgentConfig &c, std::string_view v, bool first) -> Status {
			 if (first)
				 c.allow.netns.clear();
			 c.allow.netns.emplace_back(v);
			 return {};
		 }},
		{"allow-interface", "PATTERN", "target interface for service addresses (repeatable; replaces)",
		 [](AgentConfig &c, std::string_view v, bool first) -> Status {
			 if (first)
				 c.allow.interfaces.clear();
			 c.allow.interfaces.emplace_back(v);
			 return {};
		 }},
		{"allow-address", "CIDR", "range for service and socket addresses (repeatable; replaces)",
		 [](AgentConfig &c, std::string_view v, bool first) -> Status {
			 FERRY_TRY_ASSIGN(Cidr cidr, parseRange(v, "--allow-address"));
			 if (first)
				 c.allow.addresses.clear();
			 c.allow.addresses.push_back(cidr);
			 return {};
		 }},
		{"max-concurrent-migrations", "N", "migrations in flight at once (4)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 FERRY_TRY_ASSIGN(uint64_t n, parseUnsigned(v, "--max-concurrent-migrations", 1, 100000));
			 c.limits.maxConcurrentMigrations = static_cast<uint32_t>(n);
			 return {};
		 }},
		{"max-image-bytes", "BYTES", "largest image accepted from a source (4294967296)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 FERRY_TRY_ASSIGN(c.limits.maxImageBytes, parseUnsigned(v, "--max-image-bytes", 1, UINT64_MAX));
			 return {};
		 }},
		{"commit-timeout-ms", "MS", "time allowed between lock and commit (30000)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 FERRY_TRY_ASSIGN(uint64_t ms, parseUnsigned(v, "--commit-timeout-ms", 1, 86400000));
			 c.limits.commitTimeout = std::chrono::milliseconds(ms);
			 return {};
		 }},
		{"max-request-body-bytes", "BYTES", "largest JSON request body (16777216)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 FERRY_TRY_ASSIGN(c.limits.maxRequestBodyBytes,
					  parseUnsigned(v, "--max-request-body-bytes", 1024, UINT64_MAX));
			 return {};
		 }},
		{"insecure-plain-http", nullptr, "serve without any credential (logs a warning); =false to undo",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 FERRY_TRY_ASSIGN(c.insecurePlainHttp, parseBool(v, "--insecure-plain-http"));
			 return {};
		 }},
		{"log", "SPEC", "log levels, e.g. info or api=debug,warn (info)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 c.log = v;
			 return {};
		 }},
		{"advertise-url", "URL", "how peer agents reach this one (derived from --listen)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 c.advertiseUrl = v;
			 return {};
		 }},
		{"handoff-socket", "PATH", "workload handoff socket (STATE_DIR/handoff.sock)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 c.handoffSocket = v;
			 return {};
		 }},
		{"lock-strategy", "NAME", "flow lock: drop-both-ways or drop-inbound (drop-both-ways)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 c.lockStrategy = v;
			 return {};
		 }},
		{"runc-binary", "PATH", "runc to run for container migrations (runc)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 FERRY_TRY(checkBinary(v, "--runc-binary"));
			 c.runtimes.runcBinary = v;
			 return {};
		 }},
		{"runc-root", "DIR", "runc --root: its state directory (runc's default)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 FERRY_TRY(checkRoot(v, "--runc-root"));
			 c.runtimes.runcRoot = v;
			 return {};
		 }},
		{"podman-binary", "PATH", "podman to run for container migrations (podman)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 FERRY_TRY(checkBinary(v, "--podman-binary"));
			 c.runtimes.podmanBinary = v;
			 return {};
		 }},
		{"podman-root", "DIR", "podman --root: image and container storage (podman's default)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 FERRY_TRY(checkRoot(v, "--podman-root"));
			 c.runtimes.podmanRoot = v;
			 return {};
		 }},
		{"podman-runroot", "DIR", "podman --runroot: its run state (podman's default)",
		 [](AgentConfig &c, std::string_view v, bool) -> Status {
			 FERRY_TRY(checkRoot(v, "--podman-runroot"));
			 c.runtimes.podmanRunRoot = v;
			 return {};
		 }},
		{"podman-global-arg", "ARG", "one argument given to every podman call, before its command (repeatable; replaces the file's list)",
		 [](AgentConfig &c, std::string_view v, bool first) -> Status {
			 if (first)
				 c.runtimes.podmanGlobalArgs.clear();
			 c.runtimes.podmanGlobalArgs.emplace_back(v);
			 return {};
		 }},
		{"podman-run-arg", "ARG", "one argument appended to `podman run` (repeatable; replaces the file's list)",
		 [](AgentConfig &c, std::string_view v, bool first) -> Status {
			 if (first)
				 c.runtimes.podmanExtraArgs.clear();
			 c.runtimes.podmanExtraArgs.emplace_back(v);
			 return {};
		 }},
	};
	return table;
}

bool isLevel(std::string_view s)
{
	return s == "debug" || s == "info" || s == "warn" || s == "warning" || s == "error" || s == "off" || s == "none";
}

} // namespace

Endpoint AgentConfig::defaultListen()
{
	auto e = Endpoint::parse("127.0.0.1:7411");
	return e ? *e : Endpoint{};
}

bool isValidLogSpec(std::string_view spec)
{
	while (!spec.empty()) {
		size_t comma = spec.find(',');
		std::string_view item = spec.substr(0, comma);
		spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
		if (item.empty())
			continue;
		size_t eq = item.find('=');
		if (eq == std::string_view::npos ? !isLevel(item) : (eq == 0 || !isLevel(item.substr(eq + 1))))
			return false;
	}
	return true;
}

Result<AgentConfig> parseAgentConfig(std::string_view json, AgentConfig base)
{
	rapidjson::Document doc;
	doc.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag |
		  rapidjson::kParseCommentsFlag>(json.data(), json.size());
	if (doc.HasParseError())
		return makeError("config: not valid JSON at offset " + std::to_string(doc.GetErrorOffset()) + ": " +
					 rapidjson::GetParseError_En(doc.GetParseError()),
				 EINVAL);
	FileReader reader(base);
	FERRY_TRY(reader.top(doc));
	return base;
}

Result<AgentConfig> loadAgentConfig(const std::string &path, AgentConfig base)
{
	std::ifstream in(path, std::ios::binary);
	if (!in)
		return errnoError("cannot open config file").at("file", path);
	std::ostringstream text;
	text << in.rdbuf();
	if (in.bad())
		return errnoError("cannot read config file").at("file", path);
	auto config = parseAgentConfig(text.str(), std::move(base));
	if (!config)
		return std::move(config).error().at("file", path);
	return config;
}

Status validateAgentConfig(const AgentConfig &c)
{
	if (!c.tlsCert.empty() && c.tlsKey.empty())
		return fieldError("tls.key (--tls-key)", "missing: tls.cert is set, its private key must be too");
	if (c.tlsCert.empty() && !c.tlsKey.empty())
		return fieldError("tls.cert (--tls-cert)", "missing: tls.key is set without its certificate");
	if (!c.clientCa.empty() && c.tlsCert.empty())
		return fieldError("tls.client_ca (--client-ca)", "needs tls.cert and tls.key: client certificates need TLS");
	if (!c.hasCredential() && !c.insecurePlainHttp)
		return fieldError("token_file (--token-file)",
				  "no credential configured: set token_file or tls.client_ca, or set "
				  "insecure_plain_http to serve without authentication");
	if (!isValidLogSpec(c.log))
		return fieldError("log (--log)", "expected a spec like \"info\" or \"api=debug,warn\", got '" + c.log + "'");
	if (c.stateDir.empty())
		return fieldError("state_dir (--state-dir)", "must not be empty");
	return {};
}

Result<AgentArguments> parseAgentArguments(int argc, const char *const *argv)
{
	// Two passes: the file first, whatever its place on the line, so that
	// every flag overrides it.
	struct Pending {
		const Flag *flag;
		std::string value;
	};
	std::vector<Pending> pending;
	AgentArguments out;
	for (int i = 1; i < argc; ++i) {
		std::string_view arg = argv[i];
		if (arg == "--help" || arg == "-h") {
			out.help = true;
			continue;
		}
		if (arg.substr(0, 2) != "--")
			return makeError("unexpected argument '" + std::string(arg) + "' (see --help)", EINVAL);
		std::string_view name = arg.substr(2);
		std::optional<std::string> value;
		if (size_t eq = name.find('='); eq != std::string_view::npos) {
			value = std::string(name.substr(eq + 1));
			name = name.substr(0, eq);
		}
		auto takeValue = [&]() -> Result<std::string> {
			if (value)
				return *value;
			if (i + 1 >= argc)
				return makeError("--" + std::string(name) + " needs a value", EINVAL);
			return std::string(argv[++i]);
		};
		if (name == "config") {
			FERRY_TRY_ASSIGN(out.configFile, takeValue());
			continue;
		}
		const Flag *flag = nullptr;
		for (const Flag &f : flags()) {
			if (name == f.name)
				flag = &f;
		}
		if (!flag)
			return makeError("unknown option '--" + std::string(name) + "' (see --help)", EINVAL);
		if (!flag->value) {
			pending.push_back({flag, value.value_or("true")});
			continue;
		}
		FERRY_TRY_ASSIGN(std::string v, takeValue());
		pending.push_back({flag, std::move(v)});
	}
	if (out.help)
		return out;

	if (!out.configFile.empty()) {
		FERRY_TRY_ASSIGN(out.config, loadAgentConfig(out.configFile));
	}
	std::set<const Flag *> seen;
	for (const Pending &p : pending) {
		bool first = seen.insert(p.flag).second;
		FERRY_TRY(p.flag->apply(out.config, p.value, first));
	}
	FERRY_TRY(validateAgentConfig(out.config));
	return out;
}

std::string agentUsage(std::string_view program)
{
	std::ostringstream s;
	s << "Usage: " << program << " [--config FILE] [OPTION...]\n"
	  << "ferryd: the ferry migration agent. Options override the config file.\n\n"
	  << "  --config FILE                    JSON config file (docs/configuration.md)\n";
	for (const Flag &f : flags()) {
		std::string left = std::string("--") + f.name + (f.value ? std::string(" ") + f.value : "");
		s << "  " << left << std::string(left.size() < 33 ? 33 - left.size() : 1, ' ') << f.help << "\n";
	}
	s << "  --help                           this text\n";
	return s.str();
}

Result<std::string> readTokenFile(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	if (!in)
		return errnoError("cannot open the token file").at("token_file", path);
	std::ostringstream text;
	text << in.rdbuf();
	std::string token = text.str();
	const char *space = " \t\r\n\v\f";
	size_t first = token.find_first_not_of(space);
	if (first == std::string::npos)
		return makeError("the token file is empty", EINVAL).at("token_file", path);
	size_t last = token.find_last_not_of(space);
	token = token.substr(first, last - first + 1);
	// A token is sent in an HTTP header: it must be one printable line.
	for (char ch : token) {
		if (static_cast<unsigned char>(ch) < 0x21 || static_cast<unsigned char>(ch) > 0x7e)
			return makeError("the token must be one word of printable ASCII", EINVAL).at("token_file", path);
	}
	return token;
}

} // namespace ferry::api
