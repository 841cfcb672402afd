// The real ApiServer over loopback (127.0.0.1 and [::1], port 0) with
// httplib clients and raw sockets, in front of FakeMigrationService.
#include <doctest/doctest.h>

#include <httplib.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "api/api_server.h"
#include "api/schemas.h"
#include "base/log.h"
#include "fake_migration_service.h"
#include "prometheus_text.h"

using namespace ferry;
using namespace ferry::api;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr const char *kToken = "correct-horse-battery-staple";

// A temporary directory, removed with everything in it.
struct TempDir {
	fs::path path;
	TempDir()
	{
		char name[] = "/tmp/ferry-api-test-XXXXXX";
		REQUIRE(::mkdtemp(name) != nullptr);
		path = name;
	}
	~TempDir()
	{
		std::error_code ec;
		fs::remove_all(path, ec);
	}
	std::string file(const std::string &name, const std::string &content) const
	{
		std::ofstream(path / name, std::ios::binary) << content;
		return (path / name).string();
	}
	std::string operator/(const std::string &name) const { return (path / name).string(); }
};

AgentConfig baseConfig(const TempDir &dir, const char *host = "127.0.0.1")
{
	AgentConfig c;
	c.listen = *Endpoint::parse(std::string(host[0] == ':' ? "[" : "") + host + (host[0] == ':' ? "]" : "") + ":0");
	c.stateDir = dir / "state";
	c.tokenFile = dir.file("token", std::string(kToken) + "\n");
	c.allow.netns = {"ferry-*"};
	c.allow.interfaces = {"eth*"};
	c.allow.addresses = {*Cidr::parse("198.51.100.0/24"), *Cidr::parse("2001:db8::/32")};
	c.limits.maxRequestBodyBytes = 64 * 1024;
	c.limits.maxImageBytes = 1 << 20;
	return c;
}

std::unique_ptr<ApiServer> startServer(test::FakeMigrationService &fake, const AgentConfig &config)
{
	auto server = ApiServer::create(fake, config);
	REQUIRE_MESSAGE(server.ok(), server.error().message());
	Status started = (*server)->start();
	REQUIRE_MESSAGE(started.ok(), started.error().message());
	REQUIRE((*server)->port() != 0);
	return std::move(*server);
}

httplib::Headers auth(const std::string &token = kToken)
{
	return {{"Authorization", "Bearer " + token}};
}

migration::PrepareRequest samplePrepare(const std::string &id = "m-100")
{
	migration::PrepareRequest r;
	r.migrationId = id;
	r.sourceAgent = "http://198.51.100.1:7411";
	r.sourceVersion = "0.1.0";
	r.targetNetns = "ferry-b";
	r.addresses = {{"198.51.100.10/24", "eth0", "eth0"}};
	migration::ConnectionSummary c;
	c.flow.local = *Endpoint::parse("198.51.100.10:7000");
	c.flow.remote = *Endpoint::parse("198.51.100.20:40000");
	c.state = "ESTABLISHED";
	r.connections = {c};
	r.imageBytesHint = 1000;
	return r;
}

Error errorBody(const httplib::Result &res)
{
	REQUIRE(res);
	CHECK(res->get_header_value("Content-Type") == "application/json");
	auto e = fromJson<ErrorReply>(res->body);
	REQUIRE_MESSAGE(e.ok(), res->body);
	return e->error;
}

// Raw HTTP: sends `bytes` and returns the status of the first response
// (0 when the server closed without one). The sending side stays open:
// httplib does not answer a client that has half-closed its connection.
int rawRequest(uint16_t port, const std::string &bytes, std::string *response = nullptr)
{
	int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	REQUIRE(fd >= 0);
	sockaddr_in sa{};
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	REQUIRE(::connect(fd, reinterpret_cast<sockaddr *>(&sa), sizeof(sa)) == 0);
	size_t sent = 0;
	while (sent < bytes.size()) {
		ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
		if (n <= 0)
			break; // the server may refuse before reading everything
		sent += static_cast<size_t>(n);
	}
	std::string out;
	char buf[4096];
	while (true) {
		// Complete once the headers and Content-Length bytes are in.
		size_t headerEnd = out.find("\r\n\r\n");
		if (headerEnd != std::string::npos) {
			size_t cl = out.find("Content-Length: ");
			size_t length = cl != std::string::npos && cl < headerEnd ? std::stoul(out.substr(cl + 16)) : 0;
			if (out.size() >= headerEnd + 4 + length)
				break;
		}
		pollfd p{fd, POLLIN, 0};
		if (::poll(&p, 1, 20000) <= 0)
			break;
		ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			break;
		out.append(buf, static_cast<size_t>(n));
	}
	::close(fd);
	if (response)
		*response = out;
	if (out.compare(0, 9, "HTTP/1.1 ") != 0 || out.size() < 12)
		return 0;
	return std::atoi(out.substr(9, 3).c_str());
}

std::string rawPost(const std::string &path, const std::string &body, const std::string &extraHeaders = "")
{
	return "POST " + path + " HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + kToken +
	       "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
	       extraHeaders + "\r\n" + body;
}

// Runs `openssl` with `args` (the test's own files only).
void openssl(const std::string &args)
{
	std::string cmd = "openssl " + args + " >/dev/null 2>&1";
	REQUIRE_MESSAGE(std::system(cmd.c_str()) == 0, cmd);
}

// A CA, a server certificate for 127.0.0.1/::1, a client certificate from
// that CA and one from another CA.
struct Pki {
	TempDir dir;
	Pki()
	{
		const std::string d = dir.path.string();
		const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
		openssl("req -x509 " + key + " -keyout " + d + "/ca.key -out " + d + "/ca.crt -subj /CN=ferry-test-ca -days 1");
		openssl("req -x509 " + key + " -keyout " + d + "/other-ca.key -out " + d +
			"/other-ca.crt -subj /CN=ferry-other-ca -days 1");
		dir.file("server.ext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n");
		dir.file("client.ext", "extendedKeyUsage=clientAuth\n");
		auto issue = [&](const std::string &name, const std::string &ca, const std::string &ext) {
			openssl("req " + key + " -keyout " + d + "/" + name + ".key -out " + d + "/" + name + ".csr -subj /CN=" +
				name);
			openssl("x509 -req -in " + d + "/" + name + ".csr -CA " + d + "/" + ca + ".crt -CAkey " + d + "/" + ca +
				".key -CAcreateserial -out " + d + "/" + name + ".crt -days 1 -extfile " + d + "/" + ext);
		};
		issue("server", "ca", "server.ext");
		issue("client", "ca", "client.ext");
		issue("intruder", "other-ca", "client.ext");
	}
	std::string operator/(const std::string &name) const { return dir / name; }
};

struct QuietLogs {
	QuietLogs() { log::configure("api=error,warn"); }
	~QuietLogs() { log::configure("info"); }
};

} // namespace

TEST_CASE("401 without a token and with a wrong one, 200 with the right one (IPv4 and IPv6)")
{
	QuietLogs quiet;
	for (const char *host : {"127.0.0.1", "::1"}) {
		CAPTURE(host);
		TempDir dir;
		test::FakeMigrationService fake;
		auto server = startServer(fake, baseConfig(dir, host));
		httplib::Client cli(host, server->port());

		for (const char *path : {"/v1/info", "/metrics", "/v1/migrations", "/v1/nowhere"}) {
			auto none = cli.Get(path);
			REQUIRE(none);
			CHECK(none->status == 401);
			CHECK(none->get_header_value("WWW-Authenticate") == "Bearer realm=\"ferry\"");
			CHECK(errorBody(none).what == "missing or invalid bearer token");
			auto wrong = cli.Get(path, auth("correct-horse-battery-stapler"));
			REQUIRE(wrong);
			CHECK(wrong->status == 401);
			auto prefix = cli.Get(path, auth("correct-horse"));
			REQUIRE(prefix);
			CHECK(prefix->status == 401);
			auto basic = cli.Get(path, {{"Authorization", std::string("Basic ") + kToken}});
			REQUIRE(basic);
			CHECK(basic->status == 401);
		}
		// Refused POSTs never reach the engine.
		auto post = cli.Post("/v1/incoming", toJson(samplePrepare()), "application/json");
		REQUIRE(post);
		CHECK(post->status == 401);
		CHECK(fake.calls().prepares.empty());

		auto ok = cli.Get("/v1/info", auth());
		REQUIRE(ok);
		CHECK(ok->status == 200);
		auto info = fromJson<migration::AgentInfo>(ok->body);
		REQUIRE_MESSAGE(info.ok(), ok->body);
		CHECK(info->hostname == "host-a");
		CHECK(info->kernelFeatures.at("repair_window"));
		// The scheme is case-insensitive (RFC 7235).
		auto lower = cli.Get("/v1/info", {{"Authorization", std::string("bearer ") + kToken}});
		REQUIRE(lower);
		CHECK(lower->status == 200);
	}
}

TEST_CASE("mutual TLS: a client certificate from another CA, or none, is refused")
{
	QuietLogs quiet;
	Pki pki;
	TempDir dir;
	test::FakeMigrationService fake;
	AgentConfig config = baseConfig(dir);
	config.tlsCert = pki / "server.crt";
	config.tlsKey = pki / "server.key";
	config.clientCa = pki / "ca.crt";
	auto server = startServer(fake, config);

	auto client = [&](const std::string &cert) {
		auto c = cert.empty() ? std::make_unique<httplib::SSLClient>("127.0.0.1", server->port())
				      : std::make_unique<httplib::SSLClient>("127.0.0.1", server->port(), pki / (cert + ".crt"),
									     pki / (cert + ".key"));
		c->set_ca_cert_path((pki / "ca.crt").c_str());
		c->enable_server_certificate_verification(true);
		c->set_connection_timeout(5s);
		c->set_read_timeout(5s);
		return c;
	};

	auto good = client("client")->Get("/v1/info", auth());
	REQUIRE_MESSAGE(good, httplib::to_string(good.error()));
	CHECK(good->status == 200);
	// With a good certificate the token is still required.
	auto noToken = client("client")->Get("/v1/info");
	REQUIRE(noToken);
	CHECK(noToken->status == 401);

	auto intruder = client("intruder")->Get("/v1/info", auth());
	CHECK_FALSE(intruder); // the handshake fails: no HTTP response at all
	auto anonymous = client("")->Get("/v1/info", auth());
	CHECK_FALSE(anonymous);
	// Plain HTTP to the TLS port gets nothing useful either.
	httplib::Client plain("127.0.0.1", server->port());
	plain.set_read_timeout(5s);
	auto plainRes = plain.Get("/v1/info", auth());
	CHECK((!plainRes || plainRes->status >= 400));
	CHECK(fake.calls().starts.empty());

	// The server survives all of it.
	auto again = client("client")->Get("/v1/info", auth());
	REQUIRE(again);
	CHECK(again->status == 200);
}

TEST_CASE("TLS material that does not load is a start-up error")
{
	Pki pki;
	TempDir dir;
	test::FakeMigrationService fake;
	AgentConfig config = baseConfig(dir);
	config.tlsCert = pki / "server.crt";
	config.tlsKey = pki / "client.key"; // not the certificate's key
	auto mismatch = ApiServer::create(fake, config);
	REQUIRE_FALSE(mismatch.ok());
	CHECK(mismatch.error().what.find("TLS certificate and key") != std::string::npos);
	config.tlsKey = pki / "server.key";
	config.clientCa = dir.file("not-a-ca.pem", "hello");
	auto badCa = ApiServer::create(fake, config);
	REQUIRE_FALSE(badCa.ok());
	CHECK(badCa.error().what == "tls.client_ca: no PEM certificate in the file");
	config.clientCa = "";
	config.tokenFile = dir / "no-token-here";
	CHECK(ApiServer::create(fake, config).error().code == ENOENT);
}

TEST_CASE("prepareIncoming: 403 outside the allowlist, 201 inside")
{
	QuietLogs quiet;
	TempDir dir;
	test::FakeMigrationService fake;
	auto server = startServer(fake, baseConfig(dir));
	httplib::Client cli("127.0.0.1", server->port());

	auto outsideNetns = samplePrepare();
	outsideNetns.targetNetns = "production";
	auto res = cli.Post("/v1/incoming", auth(), toJson(outsideNetns), "application/json");
	REQUIRE(res);
	CHECK(res->status == 403);
	CHECK(errorBody(res).what == "targetNetns 'production' is not in the allowed namespaces");

	auto outsideAddress = samplePrepare();
	outsideAddress.addresses[0].cidr = "203.0.113.10/24";
	res = cli.Post("/v1/incoming", auth(), toJson(outsideAddress), "application/json");
	REQUIRE(res);
	CHECK(res->status == 403);
	CHECK(errorBody(res).what == "addresses[0].cidr 203.0.113.10/24 is outside the allowed address ranges");
	CHECK(fake.calls().prepares.empty());

	auto tooBig = samplePrepare();
	tooBig.imageBytesHint = 2 << 20;
	res = cli.Post("/v1/incoming", auth(), toJson(tooBig), "application/json");
	REQUIRE(res);
	CHECK(res->status == 413);

	res = cli.Post("/v1/incoming", auth(), toJson(samplePrepare()), "application/json");
	REQUIRE(res);
	CHECK(res->status == 201);
	CHECK(res->get_header_value("Location") == "/v1/incoming/m-100");
	auto reply = fromJson<migration::PrepareReply>(res->body);
	REQUIRE_MESSAGE(reply.ok(), res->body);
	CHECK(reply->socketsPrepared == 1);
	REQUIRE(fake.calls().prepares.size() == 1);
	CHECK(fake.calls().prepares[0].connections[0].flow.remote.toString() == "198.51.100.20:40000");

	// An engine error keeps its errno's status and its text.
	fake.prepareError = makeError("migration m-100 exists", EEXIST).at("migration", "m-100");
	res = cli.Post("/v1/incoming", auth(), toJson(samplePrepare()), "application/json");
	REQUIRE(res);
	CHECK(res->status == 409);
	Error e = errorBody(res);
	CHECK(e.code == EEXIST);
	CHECK(e.context == "migration=m-100");
}

TEST_CASE("migrations: start, list, status, abort, commit, 404 and 405")
{
	QuietLogs quiet;
	TempDir dir;
	test::FakeMigrationService fake;
	auto server = startServer(fake, baseConfig(dir));
	httplib::Client cli("127.0.0.1", server->port());

	migration::MigrationRequest mr;
	mr.selection.netns = "ferry-a";
	mr.targetAgent = "http://198.51.100.2:7411";
	mr.targetNetns = "ferry-b";
	auto res = cli.Post("/v1/migrations", auth(), toJson(mr), "application/json");
	REQUIRE(res);
	CHECK(res->status == 202);
	auto st = fromJson<migration::MigrationStatus>(res->body);
	REQUIRE_MESSAGE(st.ok(), res->body);
	CHECK(st->id == "m-1");
	CHECK(res->get_header_value("Location") == "/v1/migrations/m-1");

	res = cli.Get("/v1/migrations", auth());
	REQUIRE(res);
	CHECK(res->status == 200);
	auto list = fromJson<MigrationList>(res->body);
	REQUIRE(list.ok());
	CHECK(list->migrations.size() == 1);

	res = cli.Get("/v1/migrations/m-1", auth());
	REQUIRE(res);
	CHECK(res->status == 200);
	res = cli.Get("/v1/migrations/m-404", auth());
	REQUIRE(res);
	CHECK(res->status == 404);
	CHECK(errorBody(res).code == ENOENT);

	res = cli.Post("/v1/migrations/m-1/abort", auth(), R"({"reason":"operator"})", "application/json");
	REQUIRE(res);
	CHECK(res->status == 200);
	CHECK(fake.calls().aborts.at(0) == std::pair<std::string, std::string>{"m-1", "operator"});
	fake.abortError = makeError("m-1 is committed", EALREADY);
	res = cli.Post("/v1/migrations/m-1/abort", auth(), R"({"reason":"again"})", "application/json");
	REQUIRE(res);
	CHECK(res->status == 409);
	res = cli.Post("/v1/migrations/m-1/abort", auth(), R"({})", "application/json");
	REQUIRE(res);
	CHECK(res->status == 400);
	CHECK(errorBody(res).what == "reason: missing field");

	fake.addMigration("m-9", migration::Role::Destination, migration::Phase::Restored);
	res = cli.Post("/v1/incoming/m-9/commit", auth(), "", "application/json");
	REQUIRE(res);
	CHECK(res->status == 200);
	res = cli.Post("/v1/incoming/m-9/commit", auth(), R"({"workloadState":"Zm8="})", "application/json");
	REQUIRE(res);
	CHECK(res->status == 400);
	CHECK(errorBody(res).what.rfind("workloadState: ", 0) == 0);
	fake.commitError = makeError("commit deadline passed", ETIMEDOUT);
	CHECK(fake.calls().commits.size() == 1); // the 400 never reached the service
	res = cli.Post("/v1/incoming/m-9/commit", auth(), "", "application/json");
	REQUIRE(res);
	CHECK(res->status == 504);

	res = cli.Delete("/v1/migrations/m-1", auth());
	REQUIRE(res);
	CHECK(res->status == 405);
	CHECK(res->get_header_value("Allow") == "GET");
	res = cli.Get("/v1/incoming/m-9/image", auth());
	REQUIRE(res);
	CHECK(res->status == 405);
	CHECK(res->get_header_value("Allow") == "PUT");
	res = cli.Get("/v2/info", auth());
	REQUIRE(res);
	CHECK(res->status == 404);
	CHECK(errorBody(res).what == "no such API route: GET /v2/info");
	res = cli.Get("/v1/migrations/bad%20id", auth());
	REQUIRE(res);
	CHECK(res->status == 400);
	res = cli.Post("/v1/migrations", auth(), toJson(mr), "text/plain");
	REQUIRE(res);
	CHECK(res->status == 415);

	// An exception from the engine becomes a 500, and the server stays.
	fake.throwFromInfo = true;
	res = cli.Get("/v1/info", auth());
	REQUIRE(res);
	CHECK(res->status == 500);
	fake.throwFromInfo = false;
	res = cli.Get("/v1/info", auth());
	REQUIRE(res);
	CHECK(res->status == 200);
}

TEST_CASE("bad requests get a 4xx each and the server keeps answering")
{
	QuietLogs quiet;
	TempDir dir;
	test::FakeMigrationService fake;
	auto server = startServer(fake, baseConfig(dir));
	const uint16_t port = server->port();
	httplib::Client cli("127.0.0.1", port);
	auto stillServing = [&] {
		auto res = cli.Get("/v1/info", auth());
		REQUIRE(res);
		CHECK(res->status == 200);
	};

	struct BadBody {
		const char *what;
		std::string body;
		int status;
		std::string message; // prefix of the error message
	};
	std::string valid = toJson(samplePrepare());
	std::string wrongType = valid;
	wrongType.replace(wrongType.find("\"198.51.100.10:7000\""), 20, "7000");
	std::mt19937 rng(42);
	std::string randomBytes(4096, '\0');
	for (char &c : randomBytes)
		c = static_cast<char>(rng());
	const BadBody cases[] = {
		{"malformed JSON", "{\"migrationId\": ", 400, "body: not valid JSON"},
		{"wrong type", wrongType, 400, "connections[0].flow.local: expected string"},
		{"unknown field", valid.substr(0, valid.size() - 1) + ",\"sneaky\":true}", 400, "sneaky: unknown field"},
		{"deep nesting", std::string(20000, '[') + std::string(20000, ']'), 400, "body: nested deeper"},
		{"random bytes", randomBytes, 400, "body: not valid JSON"},
		{"huge body", "{\"pad\":\"" + std::string(200 * 1024, 'x') + "\"}", 413, "body: larger than max_request_body_bytes"},
		{"empty body", "", 400, "body: not valid JSON"},
		{"a JSON string", "\"hello\"", 400, "body: expected object"},
	};
	for (const BadBody &c : cases) {
		CAPTURE(c.what);
		auto res = cli.Post("/v1/incoming", auth(), c.body, "application/json");
		REQUIRE(res);
		CHECK(res->status == c.status);
		CHECK(errorBody(res).what.rfind(c.message, 0) == 0);
		stillServing();
	}
	CHECK(fake.calls().prepares.empty());

	// A huge body sent chunked (no Content-Length) is cut off at the limit.
	size_t offered = 0;
	auto chunked = cli.Post(
		"/v1/incoming", auth(),
		[&](size_t, httplib::DataSink &sink) {
			std::string piece(16 * 1024, ' ');
			if (offered >= 4 << 20) {
				sink.done();
				return true;
			}
			offered += piece.size();
			return sink.write(piece.data(), piece.size());
		},
		"application/json");
	if (chunked)
		CHECK(chunked->status == 413);
	stillServing();

	// Raw protocol abuse.
	std::string response;
	CHECK(rawRequest(port, "\x16\x03\x01 random garbage\r\n\r\n") == 400);
	CHECK(rawRequest(port, randomBytes) == 400);
	// A complete raw request with an unknown field.
	CHECK(rawRequest(port, rawPost("/v1/incoming", "{\"a\":1}")) == 400);
	// Content-Length longer than the body: the body is incomplete.
	std::string longer = "POST /v1/incoming HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kToken) +
			     "\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"a\":1}";
	int longerStatus = rawRequest(port, longer, &response);
	CHECK(longerStatus >= 400);
	CHECK(longerStatus < 500);
	// Content-Length shorter than the body: the JSON is cut.
	std::string shorter = "POST /v1/incoming HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kToken) +
			      "\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n" + valid;
	CHECK(rawRequest(port, shorter, &response) == 400);
	std::string notANumber = "POST /v1/migrations/m-1/abort HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
				 std::string(kToken) + "\r\nContent-Type: application/json\r\nContent-Length: lots\r\n\r\n{}";
	int nanStatus = rawRequest(port, notANumber, &response);
	CHECK(nanStatus >= 400);
	CHECK(nanStatus < 500);
	std::string badChunks = "POST /v1/incoming HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kToken) +
				"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n";
	int chunkStatus = rawRequest(port, badChunks, &response);
	CHECK(chunkStatus >= 400);
	CHECK(chunkStatus < 500);
	CHECK(rawRequest(port, "BREW /v1/info HTTP/1.1\r\nHost: x\r\n\r\n") >= 400);
	CHECK(rawRequest(port, "TRACE /v1/info HTTP/1.1\r\nHost: x\r\n\r\n") == 405);
	CHECK(rawRequest(port, "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n") == 414);
	std::string manyHeaders = "GET /v1/info HTTP/1.1\r\nHost: x\r\n";
	for (int i = 0; i < 2000; ++i)
		manyHeaders += "X-" + std::to_string(i) + ": " + std::string(100, 'h') + "\r\n";
	int headersStatus = rawRequest(port, manyHeaders + "\r\n");
	CHECK((headersStatus == 0 || (headersStatus >= 400 && headersStatus < 500)));
	stillServing();
	CHECK(fake.calls().prepares.empty());
}

TEST_CASE("the workload state arrives as bytes, byte-exact, within the image limit")
{
	QuietLogs quiet;
	TempDir dir;
	test::FakeMigrationService fake;
	auto server = startServer(fake, baseConfig(dir));
	httplib::Client cli("127.0.0.1", server->port());
	fake.addMigration("m-6", migration::Role::Destination, migration::Phase::Restored);

	std::string state(200 * 1000 + 3, '\0');
	std::mt19937 rng(11);
	for (char &c : state)
		c = static_cast<char>(rng());
	auto res = cli.Put("/v1/incoming/m-6/state", auth(), state, "application/octet-stream");
	REQUIRE(res);
	CHECK(res->status == 204);
	auto calls = fake.calls();
	REQUIRE(calls.states.size() == 1);
	CHECK(calls.states[0].first == "m-6");
	CHECK(calls.states[0].second == state);

	res = cli.Put("/v1/incoming/m-6/state", auth(), state, "application/json");
	REQUIRE(res);
	CHECK(res->status == 415);
	// Sent chunked, over the limit: cut off there (a client that sends on
	// may see the connection reset instead of the 413).
	size_t sent = 0;
	res = cli.Put(
		"/v1/incoming/m-6/state", auth(),
		[&](size_t, httplib::DataSink &sink) {
			std::string piece(64 * 1024, 's');
			if (sent >= (2u << 20)) {
				sink.done();
				return true;
			}
			sent += piece.size();
			return sink.write(piece.data(), piece.size());
		},
		"application/octet-stream");
	if (res) {
		CHECK(res->status == 413);
		CHECK(errorBody(res).what.find("max_image_bytes") != std::string::npos);
	}
	res = cli.Put("/v1/incoming/m-404/state", auth(), state, "application/octet-stream");
	REQUIRE(res);
	CHECK(res->status == 404);
	res = cli.Put("/v1/incoming/m-6/state", state, "application/octet-stream");
	REQUIRE(res);
	CHECK(res->status == 401);
	CHECK(fake.calls().states.size() == 1);
}

TEST_CASE("a chunked image upload reaches the sink as it arrives, in order, byte-exact")
{
	QuietLogs quiet;
	TempDir dir;
	test::FakeMigrationService fake;
	auto server = startServer(fake, baseConfig(dir));
	httplib::Client cli("127.0.0.1", server->port());
	cli.set_read_timeout(10s);
	fake.addMigration("m-5", migration::Role::Destination, migration::Phase::Prepared);

	std::string image(300 * 1000 + 17, '\0');
	std::mt19937 rng(7);
	for (char &c : image)
		c = static_cast<char>(rng());

	// The client holds back its last chunk until the sink has seen the
	// first one: a server that buffered the whole body would never let
	// this upload finish.
	std::mutex m;
	std::condition_variable cv;
	bool sinkSawData = false;
	fake.onChunk = [&](size_t) {
		std::lock_guard lock(m);
		sinkSawData = true;
		cv.notify_all();
	};
	size_t offset = 0;
	bool waitedForSink = false;
	auto res = cli.Put(
		"/v1/incoming/m-5/image", auth(),
		[&](size_t, httplib::DataSink &sink) {
			size_t n = std::min<size_t>(8191, image.size() - offset);
			if (offset + n == image.size()) {
				std::unique_lock lock(m);
				waitedForSink = cv.wait_for(lock, 5s, [&] { return sinkSawData; });
			}
			if (!sink.write(image.data() + offset, n))
				return false;
			offset += n;
			if (offset == image.size())
				sink.done();
			return true;
		},
		"application/octet-stream");
	REQUIRE_MESSAGE(res, httplib::to_string(res.error()));
	CHECK(res->status == 200);
	CHECK(waitedForSink);
	auto receipt = fromJson<migration::ImageReceipt>(res->body);
	REQUIRE(receipt.ok());
	CHECK(receipt->imageBytes == image.size());
	auto calls = fake.calls();
	std::string received;
	for (const auto &chunk : calls.imageChunks)
		received.append(chunk.begin(), chunk.end());
	CHECK(calls.imageChunks.size() > 1);
	CHECK(received.size() == image.size());
	CHECK(received == image);

	// Over the image limit: 413, and the sink never got more than the limit.
	fake.onChunk = nullptr;
	fake.addMigration("m-6", migration::Role::Destination, migration::Phase::Prepared);
	size_t sent = 0;
	res = cli.Put(
		"/v1/incoming/m-6/image", auth(),
		[&](size_t, httplib::DataSink &sink) {
			std::string piece(64 * 1024, 'i');
			if (sent >= (3u << 20)) {
				sink.done();
				return true;
			}
			sent += piece.size();
			return sink.write(piece.data(), piece.size());
		},
		"application/octet-stream");
	if (res) {
		CHECK(res->status == 413);
		CHECK(errorBody(res).code == EFBIG);
	}
	CHECK(fake.calls().imageBodyStatus.error().code == EFBIG);
	uint64_t total = 0;
	for (const auto &chunk : fake.calls().imageChunks)
		total += chunk.size();
	CHECK(total - image.size() <= server->config().limits.maxImageBytes);

	// With a Content-Length over the limit nothing is read at all. A
	// client that waits for 100-continue (curl) is told before it sends;
	// one that sends anyway (httplib) may see the connection reset.
	int callsBefore = fake.calls().imageCalls;
	std::string expect = "PUT /v1/incoming/m-6/image HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " +
			     std::string(kToken) +
			     "\r\nContent-Type: application/octet-stream\r\nContent-Length: 5000000\r\n"
			     "Expect: 100-continue\r\n\r\n";
	std::string response;
	CHECK(rawRequest(server->port(), expect, &response) == 413);
	CHECK(response.find("max_image_bytes") != std::string::npos);
	std::string unauthenticated = expect;
	unauthenticated.replace(unauthenticated.find(kToken), std::strlen(kToken), "nope");
	CHECK(rawRequest(server->port(), unauthenticated) == 401);
	res = cli.Put("/v1/incoming/m-6/image", auth(), std::string((1 << 20) + 1, 'x'), "application/octet-stream");
	if (res)
		CHECK(res->status == 413);
	CHECK(fake.calls().imageCalls == callsBefore);

	// A sink failure (a decoder error) reaches the client with its errno.
	fake.addMigration("m-7", migration::Role::Destination, migration::Phase::Prepared);
	fake.sinkFailsAfter = 1000;
	res = cli.Put("/v1/incoming/m-7/image", auth(), image.substr(0, 5000), "application/octet-stream");
	REQUIRE(res);
	CHECK(res->status == 400);
	CHECK(errorBody(res).what == "image record 3: checksum mismatch");

	res = cli.Put("/v1/incoming/m-nope/image", auth(), image.substr(0, 100), "application/octet-stream");
	REQUIRE(res);
	CHECK(res->status == 404);
	res = cli.Put("/v1/incoming/m-5/image", auth(), image.substr(0, 100), "application/json");
	REQUIRE(res);
	CHECK(res->status == 415);
	auto info = cli.Get("/v1/info", auth());
	REQUIRE(info);
	CHECK(info->status == 200);
}

TEST_CASE("server-sent events deliver each event and end at a terminal phase")
{
	QuietLogs quiet;
	TempDir dir;
	test::FakeMigrationService fake;
	auto server = startServer(fake, baseConfig(dir));
	fake.addMigration("m-3", migration::Role::Source, migration::Phase::Streaming);

	std::string stream;
	std::string contentType;
	std::thread reader([&] {
		httplib::Client cli("127.0.0.1", server->port());
		cli.set_read_timeout(10s);
		auto res = cli.Get(
			"/v1/migrations/m-3/events", auth(),
			[&](const httplib::Response &r) {
				contentType = r.get_header_value("Content-Type");
				return true;
			},
			[&](const char *data, size_t n) {
				stream.append(data, n);
				return true;
			});
		CHECK(res);
	});
	REQUIRE(fake.waitForSubscribers(1, 5s));
	fake.emit({"m-3", migration::Phase::Restored, 1, 2, 100, 1000us, "restored"});
	fake.emit({"m-other", migration::Phase::Aborted, 0, 0, 0, 0us, "not ours"});
	fake.emit({"m-3", migration::Phase::Committed, 2, 2, 200, 2000us, "done"});
	fake.emit({"m-3", migration::Phase::Committed, 2, 2, 200, 3000us, "after the end"});
	reader.join(); // the stream ended by itself
	CHECK(contentType == "text/event-stream");

	std::vector<migration::MigrationEvent> events;
	size_t pos = 0;
	while ((pos = stream.find("data: ", pos)) != std::string::npos) {
		size_t end = stream.find("\n\n", pos);
		REQUIRE(end != std::string::npos);
		auto ev = fromJson<migration::MigrationEvent>(stream.substr(pos + 6, end - pos - 6));
		REQUIRE(ev.ok());
		events.push_back(*ev);
		pos = end;
	}
	REQUIRE(events.size() == 3);
	CHECK((events[0].phase == migration::Phase::Streaming)); // the state at subscription
	CHECK((events[1].phase == migration::Phase::Restored));
	CHECK((events[2].phase == migration::Phase::Committed));
	CHECK(events[2].message == "done");
	CHECK(fake.waitForSubscribers(0, 5s));

	httplib::Client cli("127.0.0.1", server->port());
	auto missing = cli.Get("/v1/migrations/m-none/events", auth());
	REQUIRE(missing);
	CHECK(missing->status == 404);
}

TEST_CASE("stop() ends open event streams promptly")
{
	QuietLogs quiet;
	TempDir dir;
	test::FakeMigrationService fake;
	auto server = startServer(fake, baseConfig(dir));
	fake.addMigration("m-4", migration::Role::Source, migration::Phase::Frozen);
	std::thread reader([&] {
		httplib::Client cli("127.0.0.1", server->port());
		cli.set_read_timeout(10s);
		(void)cli.Get("/v1/migrations/m-4/events", auth(), [](const char *, size_t) { return true; });
	});
	REQUIRE(fake.waitForSubscribers(1, 5s));
	auto before = std::chrono::steady_clock::now();
	server->stop();
	CHECK(std::chrono::steady_clock::now() - before < 3s);
	reader.join();
	CHECK(fake.liveSubscriptions() == 0);
	server->stop(); // idempotent
}

TEST_CASE("/metrics is Prometheus text")
{
	QuietLogs quiet;
	TempDir dir;
	test::FakeMigrationService fake;
	fake.metricsSnapshot.migrationsByOutcome = {{"committed", 2}, {"aborted", 1}};
	fake.metricsSnapshot.blackoutBucketsMs = {1, 5, 25};
	fake.metricsSnapshot.blackoutBucketCounts = {0, 2, 2};
	fake.metricsSnapshot.blackoutCount = 2;
	fake.metricsSnapshot.blackoutSumMs = 6.5;
	fake.metricsSnapshot.activeMigrations = 1;
	auto server = startServer(fake, baseConfig(dir, "::1"));
	httplib::Client cli("::1", server->port());
	auto res = cli.Get("/metrics", auth());
	REQUIRE(res);
	CHECK(res->status == 200);
	CHECK(res->get_header_value("Content-Type").rfind("text/plain; version=0.0.4", 0) == 0);
	auto parsed = test::parsePrometheus(res->body);
	REQUIRE_MESSAGE(parsed.error.empty(), parsed.error);
	CHECK(parsed.value("ferry_migrations_total", {{"outcome", "aborted"}}) == 1);
	CHECK(parsed.value("ferry_blackout_seconds_bucket", {{"le", "0.005"}}) == 2);
	CHECK(parsed.value("ferry_active_migrations") == 1);
}

TEST_CASE("insecure_plain_http serves without credentials and says so")
{
	std::vector<std::string> warnings;
	std::mutex m;
	log::setSink([&](log::Level level, std::string_view, std::string_view line) {
		std::lock_guard lock(m);
		if (level == log::Level::Warn)
			warnings.emplace_back(line);
	});
	log::configure("info");
	{
		TempDir dir;
		test::FakeMigrationService fake;
		AgentConfig config = baseConfig(dir);
		config.tokenFile.clear();
		CHECK(ApiServer::create(fake, config).error().code == EINVAL); // not without the flag
		config.insecurePlainHttp = true;
		auto server = startServer(fake, config);
		httplib::Client cli("127.0.0.1", server->port());
		auto res = cli.Get("/v1/info");
		REQUIRE(res);
		CHECK(res->status == 200);
		// A token in the file still binds even with the flag.
		config.tokenFile = dir.file("token2", "abc");
		auto guarded = startServer(fake, config);
		httplib::Client cli2("127.0.0.1", guarded->port());
		auto refused = cli2.Get("/v1/info");
		REQUIRE(refused);
		CHECK(refused->status == 401);
	}
	log::setSink({});
	std::lock_guard lock(m);
	REQUIRE(warnings.size() >= 1);
	CHECK(warnings[0].find("WITHOUT authentication") != std::string::npos);
	for (const auto &w : warnings)
		CHECK(w.find("abc") == std::string::npos); // never a token
}
