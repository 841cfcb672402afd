#include "handoff_channel.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace ferry::demo {

namespace {

// Requests are tiny; anything bigger is not one of ours.
constexpr size_t kMaxRequestSize = 64 * 1024;
// What the kernel needs on top of the payload for one unix packet
// (unix_dgram_sendmsg refuses len > sk_sndbuf - 32; the rest is slack for
// the skb's own accounting).
constexpr size_t kPacketOverhead = 64 * 1024;

Error protocolError(const std::string &what)
{
	return makeError("handoff request " + what, EPROTO);
}

bool isEmptyObject(const rapidjson::Value &v)
{
	return v.IsObject() && v.MemberCount() == 0;
}

Status sendPacket(int fd, const std::string &message)
{
	// The socket is non-blocking for the event loop; a reply is rare and
	// small enough to wait for.
	while (true) {
		ssize_t n = ::send(fd, message.data(), message.size(), MSG_NOSIGNAL);
		if (n >= 0)
			return {};
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			return errnoError("send on handoff socket");
		pollfd p{fd, POLLOUT, 0};
		if (::poll(&p, 1, 1000) < 0 && errno != EINTR)
			return errnoError("poll on handoff socket");
	}
}

} // namespace

Result<HandoffRequest> parseHandoffRequest(std::string_view message)
{
	rapidjson::Document doc;
	doc.Parse(message.data(), message.size());
	if (doc.HasParseError() || !doc.IsObject())
		return protocolError("is not a JSON object");
	if (doc.MemberCount() != 1)
		return protocolError("must have exactly one member, has " + std::to_string(doc.MemberCount()));
	const auto &m = *doc.MemberBegin();
	std::string_view name(m.name.GetString(), m.name.GetStringLength());
	HandoffRequest request;
	if (name == "prepare") {
		if (!m.value.IsObject())
			return protocolError("'prepare' is not an object");
		auto migration = m.value.FindMember("migration");
		if (migration == m.value.MemberEnd() || !migration->value.IsString())
			return protocolError("'prepare.migration' is missing or not a string");
		request.kind = HandoffRequest::Kind::Prepare;
		request.migration.assign(migration->value.GetString(), migration->value.GetStringLength());
		return request;
	}
	if (name == "resume" || name == "exit") {
		if (!isEmptyObject(m.value))
			return protocolError("'" + std::string(name) + "' must be an empty object");
		request.kind = name == "resume" ? HandoffRequest::Kind::Resume : HandoffRequest::Kind::Exit;
		return request;
	}
	return protocolError("'" + std::string(name) + "' is not prepare, resume or exit");
}

std::string handoffHelloMessage(long pid, std::string_view name)
{
	rapidjson::StringBuffer buffer;
	rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
	w.StartObject();
	w.Key("hello");
	w.StartObject();
	w.Key("pid");
	w.Int64(pid);
	w.Key("name");
	w.String(name.data(), static_cast<rapidjson::SizeType>(name.size()));
	w.EndObject();
	w.EndObject();
	return buffer.GetString();
}

std::string handoffReadyMessage(std::string_view stateBase64)
{
	rapidjson::StringBuffer buffer;
	rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
	w.StartObject();
	w.Key("ready");
	w.StartObject();
	w.Key("state");
	w.String(stateBase64.data(), static_cast<rapidjson::SizeType>(stateBase64.size()));
	w.EndObject();
	w.EndObject();
	return buffer.GetString();
}

Result<HandoffChannel> HandoffChannel::connect(const std::string &path, std::string_view name)
{
	sockaddr_un sun{};
	sun.sun_family = AF_UNIX;
	if (path.empty() || path.size() >= sizeof(sun.sun_path))
		return makeError("FERRY_HANDOFF_SOCKET path is empty or too long", EINVAL).at("path", path);
	std::memcpy(sun.sun_path, path.data(), path.size());
	UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
	if (!fd)
		return errnoError("socket(AF_UNIX, SOCK_SEQPACKET)");
	if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&sun), sizeof(sun)) < 0)
		return errnoError("connect to the handoff socket").at("path", path);
	FERRY_TRY(sendPacket(fd.get(), handoffHelloMessage(static_cast<long>(::getpid()), name)));
	int flags = ::fcntl(fd.get(), F_GETFL);
	if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags | O_NONBLOCK) < 0)
		return errnoError("make the handoff socket non-blocking");
	return HandoffChannel(std::move(fd));
}

Result<std::optional<HandoffRequest>> HandoffChannel::receive()
{
	std::vector<char> buffer(kMaxRequestSize);
	ssize_t n;
	do
		n = ::recv(fd_.get(), buffer.data(), buffer.size(), MSG_TRUNC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errnoError("recv on handoff socket");
	if (n == 0)
		return std::optional<HandoffRequest>();
	if (static_cast<size_t>(n) > buffer.size())
		return protocolError("of " + std::to_string(n) + " bytes is larger than any request");
	FERRY_TRY_ASSIGN(HandoffRequest request, parseHandoffRequest(std::string_view(buffer.data(), static_cast<size_t>(n))));
	return std::optional<HandoffRequest>(std::move(request));
}

Status HandoffChannel::sendReady(std::string_view stateBase64)
{
	std::string message = handoffReadyMessage(stateBase64);
	int current = 0;
	socklen_t len = sizeof(current);
	if (::getsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUF, &current, &len) < 0)
		return errnoError("getsockopt(SO_SNDBUF) on handoff socket");
	size_t needed = message.size() + kPacketOverhead;
	if (static_cast<size_t>(current) < needed) {
		// The kernel doubles the value it is given; ask for half.
		int ask = static_cast<int>(needed / 2 + 1);
		if (::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUFFORCE, &ask, sizeof(ask)) < 0 &&
		    ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUF, &ask, sizeof(ask)) < 0)
			return errnoError("raise the handoff socket's send buffer").at("bytes", std::to_string(needed));
	}
	Status sent = sendPacket(fd_.get(), message);
	if (!sent.ok() && sent.error().code == EMSGSIZE)
		sent.error().what = "the ready message (" + std::to_string(message.size()) +
			" bytes) does not fit one packet on the handoff socket; raise net.core.wmem_max or run privileged";
	return sent;
}

} // namespace ferry::demo
