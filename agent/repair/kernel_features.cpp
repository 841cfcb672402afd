#include "kernel_features.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>

#include "base/unique_fd.h"
#include "socket_iterator.h"

namespace ferry::repair {

namespace {

// TCP_AO_INFO (Linux >= 6.7); the libc headers of Debian 12 predate it.
constexpr int kTcpAoInfo = 40;

bool setInt(int fd, int level, int name, int value)
{
	return ::setsockopt(fd, level, name, &value, sizeof(value)) == 0;
}

UniqueFd tcpSocket(int family)
{
	return UniqueFd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
}

// Connects a repair-mode socket to 127.0.0.1 without a handshake (repair
// connect sends nothing), queues a FIN as sent and checks that the kernel
// moved to FIN_WAIT1. Closed in repair mode: nothing reaches the wire.
bool probeHalfClose()
{
	UniqueFd fd = tcpSocket(AF_INET);
	if (!fd || !setInt(fd.get(), SOL_TCP, TCP_REPAIR, 1))
		return false;
	sockaddr_in to{};
	to.sin_family = AF_INET;
	to.sin_port = htons(9); // discard; never contacted
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&to), sizeof(to)) < 0)
		return false;
	if (!setInt(fd.get(), SOL_TCP, TCP_REPAIR_QUEUE, TCP_SEND_QUEUE))
		return false;
	if (::shutdown(fd.get(), SHUT_WR) < 0)
		return false;
	tcp_info info{};
	socklen_t length = sizeof(info);
	if (::getsockopt(fd.get(), SOL_TCP, TCP_INFO, &info, &length) < 0)
		return false;
	return info.tcpi_state == TCP_FIN_WAIT1;
}

const char *yesNo(bool b)
{
	return b ? "yes" : "no";
}

} // namespace

KernelFeatures probeKernelFeatures()
{
	KernelFeatures f;
	f.ipv6 = static_cast<bool>(tcpSocket(AF_INET6));
	// Loads the process's iterator once; a failure is logged there.
	f.bpfSocketIterator = SocketIterator::shared().ok();

	UniqueFd fd = tcpSocket(AF_INET);
	if (!fd)
		return f;

	int value = 0;
	socklen_t length = sizeof(value);
	f.bufferLock = ::getsockopt(fd.get(), SOL_SOCKET, SO_BUF_LOCK, &value, &length) == 0;

	// Deleting a key that does not exist: ENOENT when MD5 is built in,
	// ENOPROTOOPT when it is not. Nothing is changed either way.
	tcp_md5sig md5{};
	md5.tcpm_addr.ss_family = AF_INET;
	errno = 0;
	::setsockopt(fd.get(), SOL_TCP, TCP_MD5SIG, &md5, sizeof(md5));
	f.tcpMd5 = errno != ENOPROTOOPT;

	std::array<uint8_t, 48> ao{};
	length = ao.size();
	errno = 0;
	::getsockopt(fd.get(), SOL_TCP, kTcpAoInfo, ao.data(), &length);
	f.tcpAo = errno != ENOPROTOOPT;

	f.repair = setInt(fd.get(), SOL_TCP, TCP_REPAIR, 1);
	if (!f.repair)
		return f;

	tcp_repair_window window{};
	length = sizeof(window);
	f.repairWindow = ::getsockopt(fd.get(), SOL_TCP, TCP_REPAIR_WINDOW, &window, &length) == 0;
	f.timestamp = setInt(fd.get(), SOL_TCP, TCP_TIMESTAMP, 1000);
	f.halfClosedRepair = probeHalfClose();
	return f;
}

std::map<std::string, bool> KernelFeatures::toMap() const
{
	return {
		{"repair", repair},
		{"repair_window", repairWindow},
		{"timestamp", timestamp},
		{"half_closed_repair", halfClosedRepair},
		{"buffer_lock", bufferLock},
		{"ipv6", ipv6},
	};
}

std::string KernelFeatures::describe() const
{
	std::string s;
	s.append("repair=").append(yesNo(repair));
	s.append(" repair_window=").append(yesNo(repairWindow));
	s.append(" timestamp=").append(yesNo(timestamp));
	s.append(" half_closed=").append(yesNo(halfClosedRepair));
	s.append(" buf_lock=").append(yesNo(bufferLock));
	s.append(" tcp_md5=").append(yesNo(tcpMd5));
	s.append(" tcp_ao=").append(yesNo(tcpAo));
	s.append(" ipv6=").append(yesNo(ipv6));
	s.append(" bpf_socket_iterator=").append(yesNo(bpfSocketIterator));
	return s;
}

} // namespace ferry::repair
