// What ferry prints (text and JSON) and the exit code it maps errors to.
#include <doctest/doctest.h>

#include <rapidjson/document.h>

#include "api/schemas.h"
#include "cli/output.h"

using namespace ferry;
using namespace ferry::cli;
using namespace std::chrono_literals;

namespace {

migration::MigrationStatus committedStatus()
{
	migration::MigrationStatus s;
	s.id = "m-20261122-0001";
	s.role = migration::Role::Source;
	s.phase = migration::Phase::Committed;
	s.peerAgent = "https://198.51.100.2:7411";
	s.connections = 12;
	s.bytesMoved = 48213;
	s.imageBytes = 9120;
	s.startedAt = std::chrono::system_clock::time_point(std::chrono::microseconds(1795341600000123));
	s.blackout = 3870us;
	s.lockWindow = 3410us;
	s.total = 152300us;
	return s;
}

bool contains(const std::string &haystack, const std::string &needle)
{
	return haystack.find(needle) != std::string::npos;
}

} // namespace

TEST_CASE("exit codes: transport 3, refused 4, not found 5, other failures 1")
{
	// What transport/http_client.cpp returns for a failed exchange.
	auto transport = [](int code) {
		return makeError("request failed: x", code).at("url", "http://127.0.0.1:1/v1/info").at("method", "GET");
	};
	for (int code : {ECONNREFUSED, EHOSTUNREACH, ETIMEDOUT, ECONNRESET, EPROTO, EIO})
		CHECK_MESSAGE(exitCodeFor(transport(code)) == ExitCode::Unreachable, code);
	// A stream that broke names its URL without a method.
	CHECK(exitCodeFor(makeError("stream failed: x", EIO).at("url", "http://h:1/v1/migrations/m/events")) ==
	      ExitCode::Unreachable);

	// What agent_client.cpp's errorFromResponse() makes of HTTP answers.
	auto answer = [](int code, int status) {
		return makeError("the agent said no", code).at("status", std::to_string(status)).at("call", "status");
	};
	CHECK(exitCodeFor(makeError("authentication refused by the agent", EACCES).at("call", "list")) ==
	      ExitCode::Refused);
	CHECK(exitCodeFor(answer(EACCES, 403)) == ExitCode::Refused);
	CHECK(exitCodeFor(answer(EPERM, 403)) == ExitCode::Refused);
	CHECK(exitCodeFor(answer(ENOENT, 404)) == ExitCode::NotFound);
	CHECK(exitCodeFor(answer(EINVAL, 400)) == ExitCode::Failed);
	CHECK(exitCodeFor(answer(EALREADY, 409)) == ExitCode::Failed);
	CHECK(exitCodeFor(answer(EAGAIN, 503)) == ExitCode::Failed);
	CHECK(exitCodeFor(answer(EIO, 500)) == ExitCode::Failed);      // not a transport failure
	CHECK(exitCodeFor(answer(ETIMEDOUT, 504)) == ExitCode::Failed); // the agent answered
	CHECK(exitCodeFor(makeError("the agent answered HTTP 502", EIO).at("call", "list")) == ExitCode::Failed);
	CHECK(exitCodeFor(makeError("reply: expected object", EINVAL).at("reply", "list")) == ExitCode::Failed);
	// "status" inside another field's value is not the status field.
	CHECK(exitCodeFor(makeError("x", ECONNREFUSED).at("url", "http://h/v1/status=1")) == ExitCode::Unreachable);

	CHECK(static_cast<int>(ExitCode::Ok) == 0);
	CHECK(static_cast<int>(ExitCode::Failed) == 1);
	CHECK(static_cast<int>(ExitCode::Usage) == 2);
	CHECK(static_cast<int>(ExitCode::Unreachable) == 3);
	CHECK(static_cast<int>(ExitCode::Refused) == 4);
	CHECK(static_cast<int>(ExitCode::NotFound) == 5);
}

TEST_CASE("a migration's exit code: refused 4 when the destination answered 401 or 403, else aborted 1")
{
	// The source engine records the abort's Error::message(), with the
	// migration id prepended to the context of the error the peer client
	// made of the destination's answer (errorFromResponse).
	auto aborted = [](const Error &cause) {
		migration::MigrationStatus s = committedStatus();
		s.phase = migration::Phase::Aborted;
		s.error = Error(cause).at("migration", s.id).message();
		return s;
	};
	auto answer = [](std::string what, int code, int status, std::string_view call) {
		return makeError(std::move(what), code).at("status", std::to_string(status)).at("call", call);
	};
	migration::MigrationStatus refused =
		aborted(answer("target netns is not allowed", EACCES, 403, "prepare").at("netns", "fe2e-not-allowed"));
	CHECK(refusalStatus(refused) == 403);
	CHECK(exitCodeFor(refused) == ExitCode::Refused);
	migration::MigrationStatus token =
		aborted(makeError("authentication refused by the agent", EACCES).at("status", "401").at("call", "prepare"));
	CHECK(refusalStatus(token) == 401);
	CHECK(exitCodeFor(token) == ExitCode::Refused);
	// At any call, not only the negotiation.
	CHECK(exitCodeFor(aborted(answer("restore: setsockopt(TCP_REPAIR)", EPERM, 403, "image"))) == ExitCode::Refused);

	// Other answers and local failures are aborts like any other.
	CHECK(exitCodeFor(aborted(answer("service address already configured", EEXIST, 409, "prepare"))) ==
	      ExitCode::Failed);
	CHECK(exitCodeFor(aborted(answer("restore failed", EIO, 500, "image"))) == ExitCode::Failed);
	CHECK(exitCodeFor(aborted(makeError("request failed: Connection refused", ECONNREFUSED)
					  .at("url", "http://198.51.100.2:7411/v1/incoming")
					  .at("method", "POST"))) == ExitCode::Failed);
	// EACCES on the source itself: no answer from anyone.
	CHECK(exitCodeFor(aborted(errnoError(EACCES, "pidfd_getfd").at("pid", "4242"))) == ExitCode::Failed);
	// A refusal quoted in another error's text is not why this one aborted.
	migration::MigrationStatus quoted = aborted(
		makeError("the destination aborted the commit: " + refused.error, ECANCELED));
	CHECK(refusalStatus(quoted) == 0);
	CHECK(exitCodeFor(quoted) == ExitCode::Failed);
	// Only a whole field: status=4031 or xstatus=403 are not status=403.
	CHECK(exitCodeFor(aborted(makeError("x", EIO).at("status", "4031"))) == ExitCode::Failed);
	CHECK(exitCodeFor(aborted(makeError("x", EIO).at("xstatus", "403"))) == ExitCode::Failed);
	// IPv6 flows put brackets in the context; the field still counts.
	CHECK(exitCodeFor(aborted(answer("no", EACCES, 403, "image").at("flow", "[2001:db8::1]:80->[2001:db8::100]:4000"))) ==
	      ExitCode::Refused);
	// A reason with no context at all, as an operator's abort can read.
	migration::MigrationStatus operatorAbort = committedStatus();
	operatorAbort.phase = migration::Phase::Aborted;
	operatorAbort.error = "aborted by the operator (ferry abort)";
	CHECK(exitCodeFor(operatorAbort) == ExitCode::Failed);

	// Not aborted: nothing was refused, whatever the text says.
	migration::MigrationStatus running = refused;
	running.phase = migration::Phase::Streaming;
	CHECK(refusalStatus(running) == 0);
	CHECK(exitCodeFor(running) == ExitCode::Ok);
	CHECK(exitCodeFor(committedStatus()) == ExitCode::Ok);
}

TEST_CASE("bytes, durations and times")
{
	CHECK(formatBytes(0) == "0 B");
	CHECK(formatBytes(1023) == "1023 B");
	CHECK(formatBytes(1024) == "1.0 KiB");
	CHECK(formatBytes(48213) == "47.1 KiB");
	CHECK(formatBytes(3355443) == "3.2 MiB");
	CHECK(formatBytes(uint64_t(3) << 29) == "1.50 GiB");

	CHECK(formatDuration(0us) == "0 us");
	CHECK(formatDuration(870us) == "870 us");
	CHECK(formatDuration(3870us) == "3.87 ms");
	CHECK(formatDuration(15200us) == "15.2 ms");
	CHECK(formatDuration(152300us) == "152 ms");
	CHECK(formatDuration(1520000us) == "1.52 s");
	CHECK(formatDuration(125000000us) == "2m05s");
	CHECK(formatDuration(-5us) == "0 us");

	CHECK(formatTime(std::chrono::system_clock::time_point(std::chrono::microseconds(1795341600000123))) ==
	      "2026-11-22T10:00:00.000123Z");
	CHECK(formatTime(std::chrono::system_clock::time_point{}) == "1970-01-01T00:00:00.000000Z");
}

TEST_CASE("progress lines")
{
	migration::MigrationEvent e;
	e.id = "m-1";
	e.phase = migration::Phase::Streaming;
	e.connectionsDone = 3;
	e.connectionsTotal = 12;
	e.bytesDone = 20480;
	e.elapsed = 1830us;
	e.message = "dumping";
	std::string line = progressText(e);
	CHECK(line.rfind("streaming ", 0) == 0);
	CHECK(contains(line, "3/12 connections"));
	CHECK(contains(line, "20.0 KiB"));
	CHECK(contains(line, "1.83 ms"));
	CHECK(contains(line, "dumping"));
	CHECK(!contains(line, "\n"));

	e.phase = migration::Phase::Negotiating;
	e.connectionsTotal = 0;
	e.message.clear();
	line = progressText(e);
	CHECK(line.rfind("negotiating ", 0) == 0);
	CHECK(contains(line, "- connections"));
}

TEST_CASE("the result of migrate, committed and aborted")
{
	std::string text = resultText(committedStatus());
	CHECK(text.rfind("migration m-20261122-0001 committed\n", 0) == 0);
	CHECK(contains(text, "connections  12\n"));
	CHECK(contains(text, "47.1 KiB (48213 B)"));
	CHECK(contains(text, "blackout     3.87 ms\n"));
	CHECK(contains(text, "lock window  3.41 ms\n"));
	CHECK(contains(text, "total        152 ms\n"));
	CHECK(contains(text, "destination  https://198.51.100.2:7411\n"));

	migration::MigrationStatus aborted = committedStatus();
	aborted.phase = migration::Phase::Aborted;
	aborted.error = "destination unreachable";
	aborted.blackout.reset();
	aborted.lockWindow.reset();
	text = resultText(aborted);
	CHECK(text.rfind("migration m-20261122-0001 aborted: destination unreachable\n", 0) == 0);
	CHECK(contains(text, "blackout     -\n"));
}

TEST_CASE("status and list in text")
{
	migration::MigrationStatus s = committedStatus();
	s.error = "";
	std::string text = statusText(s);
	CHECK(text.rfind("id           m-20261122-0001\n", 0) == 0);
	CHECK(contains(text, "role         source\n"));
	CHECK(contains(text, "phase        committed\n"));
	CHECK(contains(text, "started      2026-11-22T10:00:00.000123Z\n"));
	CHECK(!contains(text, "error"));
	s.phase = migration::Phase::Aborted;
	s.error = "restore failed";
	CHECK(contains(statusText(s), "error        restore failed\n"));

	CHECK(listText({}) == "no migrations\n");
	migration::MigrationStatus d = committedStatus();
	d.id = "m-2";
	d.role = migration::Role::Destination;
	d.phase = migration::Phase::Streaming;
	d.blackout.reset();
	text = listText({committedStatus(), d});
	std::vector<std::string> lines;
	for (size_t start = 0, end; (end = text.find('\n', start)) != std::string::npos; start = end + 1)
		lines.push_back(text.substr(start, end - start));
	REQUIRE(lines.size() == 3);
	CHECK(lines[0].rfind("ID ", 0) == 0);
	CHECK(contains(lines[1], "source       committed"));
	CHECK(contains(lines[2], "destination  streaming"));
	// Columns line up: PHASE starts at the same offset in every row.
	CHECK(lines[0].find("PHASE") == lines[1].find("committed"));
	CHECK(lines[0].find("PHASE") == lines[2].find("streaming"));
}

TEST_CASE("JSON output is the protocol's JSON")
{
	std::vector<migration::MigrationStatus> list = {committedStatus()};
	auto decoded = api::fromJson<api::MigrationList>(listJson(list));
	REQUIRE_MESSAGE(decoded.ok(), decoded.error().message());
	REQUIRE(decoded->migrations.size() == 1);
	CHECK(decoded->migrations[0].id == "m-20261122-0001");
	CHECK(decoded->migrations[0].blackout == 3870us);
	auto empty = api::fromJson<api::MigrationList>(listJson({}));
	REQUIRE(empty.ok());
	CHECK(empty->migrations.empty());
}

TEST_CASE("doctor output")
{
	std::vector<DoctorCheck> checks = {
		{"kernel: TCP_REPAIR", true, true, "accepted"},
		{"criu", false, false, "not installed"},
	};
	CHECK(doctorPassed(checks));
	std::string text = doctorText(checks);
	CHECK(contains(text, "ok    kernel: TCP_REPAIR: accepted\n"));
	CHECK(contains(text, "FAIL  criu (optional): not installed\n"));
	CHECK(contains(text, "this host can take part in a migration\n"));

	checks.push_back({"nftables", true, false, "no \"nf_tables\"\n module"});
	CHECK(!doctorPassed(checks));
	CHECK(contains(doctorText(checks), "1 required check failed"));

	rapidjson::Document doc;
	doc.Parse(doctorJson(checks).c_str());
	REQUIRE(!doc.HasParseError());
	CHECK(doc["ok"].GetBool() == false);
	REQUIRE(doc["checks"].Size() == 3);
	CHECK(std::string(doc["checks"][2]["name"].GetString()) == "nftables");
	CHECK(doc["checks"][2]["required"].GetBool());
	CHECK(!doc["checks"][2]["ok"].GetBool());
	CHECK(std::string(doc["checks"][2]["detail"].GetString()) == "no \"nf_tables\"\n module");
	CHECK(!doc["checks"][1]["required"].GetBool());
}
