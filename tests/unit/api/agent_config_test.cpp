#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "api/agent_config.h"

using namespace ferry;
using namespace ferry::api;
using namespace std::chrono_literals;

namespace {

// A file that removes itself.
struct TempFile {
	std::string path;
	explicit TempFile(const std::string &content)
	{
		char name[] = "/tmp/ferry-config-test-XXXXXX";
		int fd = ::mkstemp(name);
		REQUIRE(fd >= 0);
		::close(fd);
		path = name;
		std::ofstream(path, std::ios::binary) << content;
	}
	~TempFile() { std::remove(path.c_str()); }
};

Result<AgentArguments> parse(std::vector<std::string> args)
{
	std::vector<const char *> argv = {"ferryd"};
	for (const auto &a : args)
		argv.push_back(a.c_str());
	return parseAgentArguments(static_cast<int>(argv.size()), argv.data());
}

std::string errorOf(const Result<AgentArguments> &r)
{
	if (r.ok())
		return "";
	CHECK(r.error().code == EINVAL);
	return r.error().what;
}

std::string parseError(const std::string &json)
{
	auto r = parseAgentConfig(json);
	if (r.ok())
		return "";
	CHECK(r.error().code == EINVAL);
	return r.error().what;
}

} // namespace

TEST_CASE("the example config parses into every field")
{
	auto config = loadAgentConfig(FERRY_SOURCE_DIR "/configs/ferryd.json");
	REQUIRE_MESSAGE(config.ok(), config.error().message());
	const AgentConfig &c = *config;
	CHECK(c.listen.toString() == "198.51.100.1:7411");
	CHECK(c.stateDir == "/var/lib/ferry");
	CHECK(c.tlsCert == "/etc/ferry/tls/agent.crt");
	CHECK(c.tlsKey == "/etc/ferry/tls/agent.key");
	CHECK(c.clientCa == "/etc/ferry/tls/agents-ca.crt");
	CHECK(c.tokenFile == "/etc/ferry/token");
	CHECK(c.allow.netns == std::vector<std::string>{"ferry-*", "/run/netns/ct-*"});
	CHECK(c.allow.interfaces == std::vector<std::string>{"eth0", "veth-*"});
	REQUIRE(c.allow.addresses.size() == 2);
	CHECK(c.allow.addresses[1].toString() == "2001:db8:100::/48");
	CHECK(c.limits.maxConcurrentMigrations == 4);
	CHECK(c.limits.maxImageBytes == 4294967296ull);
	CHECK(c.limits.commitTimeout == 30000ms);
	CHECK(c.limits.maxRequestBodyBytes == 16777216ull);
	CHECK_FALSE(c.insecurePlainHttp);
	CHECK(c.log == "info");
	CHECK(validateAgentConfig(c).ok());
}

TEST_CASE("flags override the file, in either spelling, and lists are replaced")
{
	TempFile file(R"({"listen": "127.0.0.1:7411", "token_file": "/etc/ferry/token",
		"allow": {"netns": ["from-file"], "addresses": ["198.51.100.0/24"]}, "log": "warn"})");
	auto r = parse({"--listen", "[::1]:0", "--config", file.path, "--allow-netns=a", "--allow-netns", "b",
			"--max-image-bytes=1024", "--commit-timeout-ms", "1500", "--log=api=debug,info",
			"--insecure-plain-http"});
	REQUIRE_MESSAGE(r.ok(), r.error().message());
	const AgentConfig &c = r->config;
	CHECK(r->configFile == file.path);
	CHECK(c.listen.toString() == "[::1]:0");
	CHECK(c.allow.netns == std::vector<std::string>{"a", "b"});
	REQUIRE(c.allow.addresses.size() == 1); // from the file, untouched
	CHECK(c.limits.maxImageBytes == 1024);
	CHECK(c.limits.commitTimeout == 1500ms);
	CHECK(c.log == "api=debug,info");
	CHECK(c.insecurePlainHttp);
	CHECK(c.tokenFile == "/etc/ferry/token");

	auto off = parse({"--config", file.path, "--insecure-plain-http=false"});
	REQUIRE(off.ok());
	CHECK_FALSE(off->config.insecurePlainHttp);
}

TEST_CASE("--help and usage")
{
	auto r = parse({"--help", "--no-such-flag-is-ignored-after-help"});
	// Unknown flags are errors even next to --help: the user should see them.
	CHECK_FALSE(r.ok());
	auto h = parse({"--help"});
	REQUIRE(h.ok());
	CHECK(h->help);
	std::string usage = agentUsage("ferryd");
	for (const char *flag : {"--config", "--listen", "--state-dir", "--tls-cert", "--tls-key", "--client-ca", "--token-file",
				 "--allow-netns", "--allow-interface", "--allow-address", "--max-concurrent-migrations",
				 "--max-image-bytes", "--commit-timeout-ms", "--max-request-body-bytes", "--insecure-plain-http",
				 "--log", "--help"})
		CHECK_MESSAGE(usage.find(flag) != std::string::npos, flag);
}

TEST_CASE("file errors name the field")
{
	CHECK(parseError(R"({"listen": "127.0.0.1:1", "surprise": 1})") == "surprise: unknown field");
	CHECK(parseError(R"({"limits": {"max_image_byte": 1}})") == "limits.max_image_byte: unknown field");
	CHECK(parseError(R"({"listen": 7411})") == "listen: expected string");
	CHECK(parseError(R"({"listen": "localhost:7411"})").find("listen: expected \"address:port\"") == 0);
	CHECK(parseError(R"({"limits": {"max_image_bytes": "1G"}})") ==
	      "limits.max_image_bytes: expected an integer 1..18446744073709551615");
	CHECK(parseError(R"({"limits": {"max_concurrent_migrations": 0}})") ==
	      "limits.max_concurrent_migrations: expected an integer 1..100000");
	CHECK(parseError(R"({"insecure_plain_http": "yes"})") == "insecure_plain_http: expected true or false");
	CHECK(parseError(R"({"allow": {"addresses": ["198.51.100.0/24", "198.51.100.1/24"]}})").find(
		      "allow.addresses[1]: '198.51.100.1/24' is not a CIDR: host bits are set") == 0);
	CHECK(parseError(R"({"allow": {"addresses": ["2001:db8::/129"]}})").find("allow.addresses[0]: ") == 0);
	CHECK(parseError(R"({"allow": {"netns": "ferry-*"}})") == "allow.netns: expected array of strings");
	CHECK(parseError(R"({"tls": {"cert": 1}})") == "tls.cert: expected string");
	CHECK(parseError(R"({"log": "info", "log": "debug"})") == "log: duplicate field");
	CHECK(parseError(R"([])") == "config: expected object");
	CHECK(parseError(R"({"listen": )").find("config: not valid JSON") == 0);
	// Comments are allowed in the file, for operators.
	CHECK(parseError("{/* the agent */ \"log\": \"info\"}") == "");
}

TEST_CASE("cross-field rules: TLS pairs, credentials, log spec")
{
	CHECK(errorOf(parse({"--token-file", "/t", "--tls-cert", "/c"})).find("tls.key (--tls-key): missing") == 0);
	CHECK(errorOf(parse({"--token-file", "/t", "--tls-key", "/k"})).find("tls.cert (--tls-cert): missing") == 0);
	CHECK(errorOf(parse({"--client-ca", "/ca"})).find("tls.client_ca (--client-ca): needs tls.cert") == 0);
	CHECK(errorOf(parse({})).find("token_file (--token-file): no credential configured") == 0);
	CHECK(errorOf(parse({"--insecure-plain-http"})) == "");
	CHECK(errorOf(parse({"--tls-cert", "/c", "--tls-key", "/k", "--client-ca", "/ca"})) == "");
	CHECK(errorOf(parse({"--token-file", "/t", "--log", "api=loud"})).find("log (--log): expected") == 0);
	CHECK(errorOf(parse({"--token-file", "/t", "--allow-address", "198.51.100.7/24"})).find("--allow-address: ") == 0);
	CHECK(errorOf(parse({"--token-file", "/t", "--max-request-body-bytes", "10"})) ==
	      "--max-request-body-bytes: expected an integer 1024..18446744073709551615, got '10'");
	CHECK(errorOf(parse({"--token-file"})) == "--token-file needs a value");
	CHECK(errorOf(parse({"--bogus"})) == "unknown option '--bogus' (see --help)");
	CHECK(errorOf(parse({"stray"})) == "unexpected argument 'stray' (see --help)");
	CHECK(errorOf(parse({"--insecure-plain-http=maybe"})) == "--insecure-plain-http: expected true or false, got 'maybe'");
	auto missing = parse({"--config", "/nonexistent/ferryd.json"});
	REQUIRE_FALSE(missing.ok());
	CHECK(missing.error().code == ENOENT);
	CHECK(missing.error().context == "file=/nonexistent/ferryd.json");
}

TEST_CASE("the token file is read and trimmed, never echoed")
{
	TempFile good("  s3cret-token_value.1\n\n");
	auto token = readTokenFile(good.path);
	REQUIRE(token.ok());
	CHECK(*token == "s3cret-token_value.1");
	TempFile empty(" \n\t");
	CHECK(readTokenFile(empty.path).error().what == "the token file is empty");
	TempFile twoWords("abc def\n");
	auto bad = readTokenFile(twoWords.path);
	REQUIRE_FALSE(bad.ok());
	CHECK(bad.error().message().find("abc") == std::string::npos);
	CHECK(readTokenFile("/nonexistent/token").error().code == ENOENT);
}

TEST_CASE("log specs")
{
	CHECK(isValidLogSpec("info"));
	CHECK(isValidLogSpec("api=debug,netlock=warn,error"));
	CHECK(isValidLogSpec(""));
	CHECK_FALSE(isValidLogSpec("loud"));
	CHECK_FALSE(isValidLogSpec("=debug"));
	CHECK_FALSE(isValidLogSpec("api=loud"));
}
