#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include <rapidjson/document.h>

#include "handoff_channel.h"

using namespace ferry;
using namespace ferry::demo;

TEST_CASE("handoff requests parse exactly")
{
	auto prepare = parseHandoffRequest(R"({"prepare":{"migration":"m-1"}})");
	REQUIRE(prepare.ok());
	CHECK(prepare->kind == HandoffRequest::Kind::Prepare);
	CHECK(prepare->migration == "m-1");
	CHECK(parseHandoffRequest(R"({"resume":{}})")->kind == HandoffRequest::Kind::Resume);
	CHECK(parseHandoffRequest(R"({"exit":{}})")->kind == HandoffRequest::Kind::Exit);

	for (const char *bad : {"", "nope", "[]", "{}", R"({"prepare":{}})", R"({"prepare":{"migration":1}})",
		     R"({"resume":{},"exit":{}})", R"({"exit":{"now":true}})", R"({"resume":[]})", R"({"freeze":{}})"}) {
		INFO(bad);
		auto r = parseHandoffRequest(bad);
		REQUIRE_FALSE(r.ok());
		CHECK(r.error().code == EPROTO);
	}
}

TEST_CASE("hello and ready are the messages of docs/workloads.md")
{
	rapidjson::Document hello;
	hello.Parse(handoffHelloMessage(1234, "demo").c_str());
	REQUIRE(hello.IsObject());
	CHECK(hello["hello"]["pid"].GetInt() == 1234);
	CHECK(std::string(hello["hello"]["name"].GetString()) == "demo");

	rapidjson::Document ready;
	ready.Parse(handoffReadyMessage("QUJD").c_str());
	REQUIRE(ready.IsObject());
	CHECK(std::string(ready["ready"]["state"].GetString()) == "QUJD");
}

TEST_CASE("the channel says hello, takes requests and sends a ready bigger than a default packet")
{
	std::string dir = "/tmp/ferry-demo-channel-XXXXXX";
	REQUIRE(::mkdtemp(dir.data()));
	std::string path = dir + "/handoff.sock";
	UniqueFd listener(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
	sockaddr_un sun{};
	sun.sun_family = AF_UNIX;
	std::strcpy(sun.sun_path, path.c_str());
	REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr *>(&sun), sizeof(sun)) == 0);
	REQUIRE(::listen(listener.get(), 1) == 0);

	auto channel = HandoffChannel::connect(path, "demo");
	REQUIRE(channel.ok());
	UniqueFd ferrySide(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
	::unlink(path.c_str());
	::rmdir(dir.c_str());
	REQUIRE(ferrySide);

	char buf[512];
	ssize_t n = ::recv(ferrySide.get(), buf, sizeof(buf), 0);
	REQUIRE(n > 0);
	rapidjson::Document hello;
	hello.Parse(buf, static_cast<size_t>(n));
	CHECK(hello["hello"]["pid"].GetInt() == ::getpid());

	std::string prepare = R"({"prepare":{"migration":"m-7"}})";
	REQUIRE(::send(ferrySide.get(), prepare.data(), prepare.size(), 0) == static_cast<ssize_t>(prepare.size()));
	auto request = channel->receive();
	REQUIRE(request.ok());
	REQUIRE(*request);
	CHECK((*request)->migration == "m-7");

	// About 10,000 connections' worth of blob: far beyond the default
	// unix socket buffer, still one packet.
	std::string blob(1500000, 'A');
	REQUIRE(channel->sendReady(blob).ok());
	ssize_t size = ::recv(ferrySide.get(), nullptr, 0, MSG_PEEK | MSG_TRUNC);
	REQUIRE(size > static_cast<ssize_t>(blob.size()));
	std::vector<char> ready(static_cast<size_t>(size));
	REQUIRE(::recv(ferrySide.get(), ready.data(), ready.size(), 0) == size);
	rapidjson::Document doc;
	doc.Parse(ready.data(), ready.size());
	REQUIRE(doc.IsObject());
	CHECK(doc["ready"]["state"].GetStringLength() == blob.size());

	// ferry closing its end reads as "no more requests".
	ferrySide.reset();
	auto closed = channel->receive();
	REQUIRE(closed.ok());
	CHECK_FALSE(*closed);
}
