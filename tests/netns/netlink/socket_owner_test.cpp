// Socket owners against the real kernel: forked process trees that hold
// sockets in a namespace of the test's own, inode -> (pid, fd) mapping,
// and pidfd_getfd taking a live connection from another process.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <future>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "base/netns.h"
#include "netlink/sock_diag.h"
#include "netlink/socket_owner.h"
#include "test_network.h"

using namespace ferry;
using namespace ferry::netlink;

namespace {

// In a forked child nothing may throw (doctest would run on in the copy):
// failures end the child with a message.
void must(bool ok, const char *what)
{
	if (!ok) {
		std::fprintf(stderr, "child %d: %s failed: %s\n", ::getpid(), what, std::strerror(errno));
		::_exit(2);
	}
}

// Forks a child that runs `body`, then sleeps until killed. The child dies
// with its parent (PR_SET_PDEATHSIG), so nothing outlives a crashed test.
pid_t spawn(const std::function<void()> &body)
{
	pid_t parent = ::getpid();
	pid_t pid = ::fork();
	must(pid >= 0, "fork");
	if (pid == 0) {
		::prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (::getppid() != parent)
			::_exit(1);
		body();
		for (;;)
			::pause();
	}
	return pid;
}

// Kills and reaps the processes a test started, parents before their
// children: the test is a subreaper, and a child is reparented to it only
// once its parent has exited.
struct Processes {
	std::vector<pid_t> pids;

	Processes() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }
	~Processes()
	{
		for (pid_t pid : pids)
			::kill(pid, SIGKILL);
		for (pid_t pid : pids)
			::waitpid(pid, nullptr, 0);
	}
};

// What a child reports about one of its fds.
struct Record {
	int tag;
	pid_t pid;
	int fd;
	uint64_t inode;
};

uint64_t inodeOf(int fd)
{
	struct stat st{};
	if (::fstat(fd, &st) != 0)
		return 0;
	return st.st_ino;
}

void report(int pipeFd, int tag, int fd)
{
	Record r{tag, ::getpid(), fd, inodeOf(fd)};
	must(::write(pipeFd, &r, sizeof(r)) == sizeof(r), "report");
}

std::map<int, Record> readRecords(int pipeFd, size_t count)
{
	std::map<int, Record> out;
	while (out.size() < count) {
		pollfd p{pipeFd, POLLIN, 0};
		REQUIRE_MESSAGE(::poll(&p, 1, 5000) == 1, "children reported ", out.size(), " of ", count, " fds");
		Record r{};
		REQUIRE(::read(pipeFd, &r, sizeof(r)) == sizeof(r));
		out[r.tag] = r;
	}
	return out;
}

struct Pipe {
	UniqueFd read;
	UniqueFd write;
	Pipe()
	{
		int fds[2];
		REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
		read.reset(fds[0]);
		write.reset(fds[1]);
	}
};

sockaddr_storage loopback(int family, uint16_t port, socklen_t &len)
{
	sockaddr_storage ss{};
	if (family == AF_INET) {
		auto *in = reinterpret_cast<sockaddr_in *>(&ss);
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		in->sin_port = htons(port);
		len = sizeof(sockaddr_in);
	} else {
		auto *in6 = reinterpret_cast<sockaddr_in6 *>(&ss);
		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_loopback;
		in6->sin6_port = htons(port);
		len = sizeof(sockaddr_in6);
	}
	return ss;
}

// Child-side socket helpers (no doctest): -1 on failure.
int listenLoopback(int family)
{
	int fd = ::socket(family, SOCK_STREAM, 0);
	socklen_t len = 0;
	sockaddr_storage ss = loopback(family, 0, len);
	if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr *>(&ss), len) != 0 || ::listen(fd, 16) != 0)
		return -1;
	return fd;
}

uint16_t portOf(int fd)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	if (::getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) != 0)
		return 0;
	return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in *>(&ss)->sin_port
					     : reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port);
}

int connectLoopback(int family, uint16_t port)
{
	int fd = ::socket(family, SOCK_STREAM, 0);
	socklen_t len = 0;
	sockaddr_storage ss = loopback(family, port, len);
	if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr *>(&ss), len) != 0)
		return -1;
	return fd;
}

// A listener in the namespace, made by the test process itself.
UniqueFd testListener(int netnsFd, int family)
{
	Result<UniqueFd> fd = runInNetns(netnsFd, [family]() -> Result<UniqueFd> {
		UniqueFd l(listenLoopback(family));
		if (!l)
			return errnoError("listen on loopback");
		return l;
	});
	REQUIRE_MESSAGE(fd.ok(), fd.error().message());
	return std::move(*fd);
}

std::vector<SocketHolder> sorted(std::vector<SocketHolder> holders)
{
	std::sort(holders.begin(), holders.end(),
		  [](const SocketHolder &a, const SocketHolder &b) { return a.pid != b.pid ? a.pid < b.pid : a.fd < b.fd; });
	return holders;
}

std::vector<SocketHolder> holdersOf(const SocketOwnerMap &map, uint64_t inode)
{
	const std::vector<SocketHolder> *h = map.find(inode);
	return h ? sorted(*h) : std::vector<SocketHolder>{};
}

pid_t deadPid()
{
	pid_t pid = ::fork();
	REQUIRE(pid >= 0);
	if (pid == 0)
		::_exit(0);
	REQUIRE(::waitpid(pid, nullptr, 0) == pid);
	return pid;
}

enum Tag { kListener, kClient1, kAccepted1, kClient2, kAccepted2, kClient3, kAccepted3, kOutsider, kPipe };

} // namespace

TEST_CASE("socket inodes map to (pid, fd) across a process tree, and only within it")
{
	test::TestNetwork net;
	test::TestHost host = net.addIsolatedHost("tree");
	UniqueFd ns = host.open();
	Processes procs;
	Pipe reports;
	int out = reports.write.get();
	int nsFd = ns.get();

	// root: listener + one connection (both ends); it forks `middle`, which
	// inherits all three and adds a connection; `middle` forks `leaf`, which
	// inherits everything, closes its copy of client1 and adds an IPv6
	// connection of its own.
	pid_t root = spawn([&] {
		must(::setns(nsFd, CLONE_NEWNET) == 0, "setns");
		int l = listenLoopback(AF_INET);
		must(l >= 0, "listen");
		int c1 = connectLoopback(AF_INET, portOf(l));
		must(c1 >= 0, "connect 1");
		int a1 = ::accept(l, nullptr, nullptr);
		must(a1 >= 0, "accept 1");
		report(out, kListener, l);
		report(out, kClient1, c1);
		report(out, kAccepted1, a1);
		spawn([&] {
			int c2 = connectLoopback(AF_INET, portOf(l));
			must(c2 >= 0, "connect 2");
			int a2 = ::accept(l, nullptr, nullptr);
			must(a2 >= 0, "accept 2");
			report(out, kClient2, c2);
			report(out, kAccepted2, a2);
			spawn([&] {
				::close(c1);
				int l6 = listenLoopback(AF_INET6);
				must(l6 >= 0, "listen 6");
				int c3 = connectLoopback(AF_INET6, portOf(l6));
				must(c3 >= 0, "connect 3");
				int a3 = ::accept(l6, nullptr, nullptr);
				must(a3 >= 0, "accept 3");
				::close(l6);
				report(out, kClient3, c3);
				report(out, kAccepted3, a3);
			});
		});
	});
	procs.pids.push_back(root);
	// A sibling of the tree, holding a socket in the same namespace.
	pid_t outsider = spawn([&] {
		must(::setns(nsFd, CLONE_NEWNET) == 0, "setns");
		int l = listenLoopback(AF_INET6);
		must(l >= 0, "listen");
		report(out, kOutsider, l);
	});
	procs.pids.push_back(outsider);
	UniqueFd mine = testListener(nsFd, AF_INET);

	std::map<int, Record> r = readRecords(reports.read.get(), 8);
	pid_t middle = r[kClient2].pid;
	pid_t leaf = r[kClient3].pid;
	procs.pids.push_back(middle);
	procs.pids.push_back(leaf);
	REQUIRE(r[kListener].pid == root);
	REQUIRE(middle != root);
	REQUIRE(leaf != middle);

	Result<std::vector<pid_t>> tree = processTree(root);
	REQUIRE_MESSAGE(tree.ok(), tree.error().message());
	std::vector<pid_t> expectedTree{root, middle, leaf};
	std::sort(expectedTree.begin(), expectedTree.end());
	CHECK(*tree == expectedTree);

	Result<SocketOwnerMap> owners = mapSocketOwners(root);
	REQUIRE_MESSAGE(owners.ok(), owners.error().message());
	CHECK(owners->processes() == expectedTree);
	auto at = [&](int tag, pid_t pid) { return SocketHolder{pid, r[tag].fd}; };
	// Inherited through two forks: three holders, same fd number.
	CHECK(holdersOf(*owners, r[kListener].inode) == sorted({at(kListener, root), at(kListener, middle), at(kListener, leaf)}));
	CHECK(holdersOf(*owners, r[kAccepted1].inode) ==
	      sorted({at(kAccepted1, root), at(kAccepted1, middle), at(kAccepted1, leaf)}));
	// The leaf closed its copy.
	CHECK(holdersOf(*owners, r[kClient1].inode) == sorted({at(kClient1, root), at(kClient1, middle)}));
	CHECK(holdersOf(*owners, r[kClient2].inode) == sorted({at(kClient2, middle), at(kClient2, leaf)}));
	CHECK(holdersOf(*owners, r[kAccepted3].inode) == std::vector<SocketHolder>{at(kAccepted3, leaf)});
	CHECK(holdersOf(*owners, r[kClient3].inode) == std::vector<SocketHolder>{at(kClient3, leaf)});
	// Outside the tree: the sibling's socket and the test's own.
	CHECK(owners->find(r[kOutsider].inode) == nullptr);
	CHECK(owners->find(inodeOf(mine.get())) == nullptr);
	CHECK(owners->socketCount() == 7);
	CHECK(owners->fdCount() == 3 + 3 + 2 + 2 + 2 + 1 + 1);

	// A subtree maps only its own processes.
	Result<SocketOwnerMap> leafOnly = mapSocketOwners(leaf);
	REQUIRE(leafOnly.ok());
	CHECK(leafOnly->processes() == std::vector<pid_t>{leaf});
	CHECK(leafOnly->find(r[kClient1].inode) == nullptr);
	CHECK(holdersOf(*leafOnly, r[kListener].inode) == std::vector<SocketHolder>{at(kListener, leaf)});

	// Joined with discovery: every socket of the namespace is owned by the
	// tree, except the sibling's and the test's.
	Result<std::vector<TcpSocketInfo>> listed = listTcpSockets(nsFd);
	REQUIRE(listed.ok());
	CHECK(listed->size() == 9);
	size_t owned = 0;
	for (const TcpSocketInfo &s : *listed) {
		bool foreign = s.inode == r[kOutsider].inode || s.inode == inodeOf(mine.get());
		CHECK((owners->find(s.inode) != nullptr) == !foreign);
		owned += owners->find(s.inode) != nullptr;
	}
	CHECK(owned == 7);

	// A root that is gone.
	Result<SocketOwnerMap> gone = mapSocketOwners(deadPid());
	REQUIRE_FALSE(gone.ok());
	CHECK(gone.error().code == ESRCH);
	CHECK_FALSE(mapSocketOwners(0).ok());
}

TEST_CASE("pidfd_getfd takes a live connection from another process, and it keeps working after the owner exits")
{
	for (int family : {AF_INET, AF_INET6}) {
		CAPTURE(family);
		test::TestNetwork net;
		test::TestHost host = net.addIsolatedHost("take");
		UniqueFd ns = host.open();
		Processes procs;
		Pipe reports;
		int out = reports.write.get();
		int nsFd = ns.get();
		UniqueFd listen = testListener(nsFd, family);
		uint16_t port = portOf(listen.get());

		pid_t owner = spawn([&] {
			must(::setns(nsFd, CLONE_NEWNET) == 0, "setns");
			int c = connectLoopback(family, port);
			must(c >= 0, "connect");
			report(out, kClient1, c);
		});
		procs.pids.push_back(owner);
		Record r = readRecords(reports.read.get(), 1)[kClient1];
		UniqueFd accepted(::accept4(listen.get(), nullptr, nullptr, SOCK_CLOEXEC));
		REQUIRE(accepted.isValid());

		SocketTaker taker;
		Result<UniqueFd> taken = taker.take(owner, r.fd, r.inode);
		REQUIRE_MESSAGE(taken.ok(), taken.error().message());
		CHECK(inodeOf(taken->get()) == r.inode);
		CHECK((::fcntl(taken->get(), F_GETFD) & FD_CLOEXEC) != 0);

		// Both directions through the taken fd.
		CHECK(::send(taken->get(), "hello", 5, MSG_NOSIGNAL) == 5);
		char buf[16] = {};
		CHECK(::recv(accepted.get(), buf, sizeof(buf), 0) == 5);
		CHECK(std::string(buf, 5) == "hello");
		CHECK(::send(accepted.get(), "reply", 5, MSG_NOSIGNAL) == 5);
		CHECK(::recv(taken->get(), buf, sizeof(buf), 0) == 5);
		CHECK(std::string(buf, 5) == "reply");

		// Taking is a duplicate: the owner still holds its fd.
		Result<SocketOwnerMap> owners = mapSocketOwners(owner);
		REQUIRE(owners.ok());
		CHECK(holdersOf(*owners, r.inode) == std::vector<SocketHolder>{{owner, r.fd}});

		// The owner exits; the connection lives on in our fd, with no FIN.
		::kill(owner, SIGKILL);
		REQUIRE(::waitpid(owner, nullptr, 0) == owner);
		procs.pids.clear();
		CHECK(::send(taken->get(), "after", 5, MSG_NOSIGNAL) == 5);
		CHECK(::recv(accepted.get(), buf, sizeof(buf), 0) == 5);
		CHECK(std::string(buf, 5) == "after");
		CHECK(::recv(accepted.get(), buf, sizeof(buf), MSG_DONTWAIT) == -1);
		CHECK(errno == EAGAIN);
	}
}

TEST_CASE("taking fails clearly for a dead pid, a zombie, a thread, a bad fd, a non-socket and a reused fd")
{
	test::TestNetwork net;
	test::TestHost host = net.addIsolatedHost("errors");
	UniqueFd ns = host.open();
	Processes procs;
	Pipe reports;
	int out = reports.write.get();
	int nsFd = ns.get();
	SocketTaker taker;

	pid_t owner = spawn([&] {
		must(::setns(nsFd, CLONE_NEWNET) == 0, "setns");
		int l = listenLoopback(AF_INET6);
		must(l >= 0, "listen");
		report(out, kListener, l);
		int p[2];
		must(::pipe(p) == 0, "pipe");
		report(out, kPipe, p[0]);
	});
	procs.pids.push_back(owner);
	std::map<int, Record> r = readRecords(reports.read.get(), 2);
	std::string ownerText = std::to_string(owner);

	SUBCASE("dead pid")
	{
		pid_t dead = deadPid();
		Result<UniqueFd> e = taker.take(dead, 0);
		REQUIRE_FALSE(e.ok());
		CHECK(e.error().code == ESRCH);
		CHECK(e.error().what.find(std::to_string(dead)) != std::string::npos);
		CHECK(e.error().context.find("phase=take-socket") != std::string::npos);
	}
	SUBCASE("zombie: exited, not reaped")
	{
		pid_t zombie = ::fork();
		REQUIRE(zombie >= 0);
		if (zombie == 0)
			::_exit(0);
		procs.pids.push_back(zombie);
		siginfo_t info{};
		REQUIRE(::waitid(P_PID, static_cast<id_t>(zombie), &info, WEXITED | WNOWAIT) == 0);
		Result<UniqueFd> e = taker.take(zombie, 0);
		REQUIRE_FALSE(e.ok());
		// Linux 6.9+ says ESRCH for an exiting task; before, EBADF.
		CHECK((e.error().code == ESRCH || e.error().code == EBADF));
	}
	SUBCASE("a thread id is not a process")
	{
		std::promise<pid_t> tid;
		std::promise<void> done;
		std::thread t([&] {
			tid.set_value(::gettid());
			done.get_future().wait();
		});
		pid_t threadId = tid.get_future().get();
		Result<UniqueFd> e = taker.take(threadId, 0);
		done.set_value();
		t.join();
		REQUIRE_FALSE(e.ok());
		CHECK((e.error().code == EINVAL || e.error().code == ENOENT));
		CHECK(e.error().what.find("thread") != std::string::npos);
	}
	SUBCASE("bad fd")
	{
		Result<UniqueFd> e = taker.take(owner, 999);
		REQUIRE_FALSE(e.ok());
		CHECK(e.error().code == EBADF);
		CHECK(e.error().what.find("has no fd 999") != std::string::npos);
		CHECK(e.error().context.find("pid=" + ownerText) != std::string::npos);
		CHECK(e.error().context.find("fd=999") != std::string::npos);
	}
	SUBCASE("not a socket")
	{
		Result<UniqueFd> e = taker.take(owner, r[kPipe].fd);
		REQUIRE_FALSE(e.ok());
		CHECK(e.error().code == ENOTSOCK);
		CHECK(e.error().what.find("not a socket") != std::string::npos);
	}
	SUBCASE("a different socket than discovery saw")
	{
		Result<UniqueFd> e = taker.take(owner, r[kListener].fd, r[kListener].inode + 1);
		REQUIRE_FALSE(e.ok());
		CHECK(e.error().code == ESTALE);
		CHECK(e.error().what.find(std::to_string(r[kListener].inode)) != std::string::npos);
		// The right inode is taken.
		CHECK(taker.take(owner, r[kListener].fd, r[kListener].inode).ok());
	}
	SUBCASE("one pidfd, several fds")
	{
		Result<UniqueFd> pidfd = taker.openProcess(owner);
		REQUIRE(pidfd.ok());
		CHECK(taker.takeFrom(pidfd->get(), owner, r[kListener].fd, r[kListener].inode).ok());
		CHECK(taker.takeFrom(pidfd->get(), owner, r[kPipe].fd).error().code == ENOTSOCK);
	}
}

TEST_CASE("taking needs ptrace access: an unprivileged process gets EPERM with an explanation")
{
	test::TestNetwork net;
	test::TestHost host = net.addIsolatedHost("perm");
	UniqueFd ns = host.open();
	UniqueFd target = testListener(ns.get(), AF_INET);
	uint64_t targetInode = inodeOf(target.get());
	pid_t self = ::getpid();
	int targetFd = target.get();
	Processes procs;
	Pipe reports;
	int out = reports.write.get();

	// The child drops to nobody (no capabilities) and tries to take a
	// socket from this root process; it reports the error code and text.
	pid_t child = spawn([&] {
		must(::setgroups(0, nullptr) == 0, "setgroups");
		must(::setresgid(65534, 65534, 65534) == 0, "setresgid");
		must(::setresuid(65534, 65534, 65534) == 0, "setresuid");
		Result<UniqueFd> e = SocketTaker().take(self, targetFd, targetInode);
		std::string text = e.ok() ? std::string("taken") : e.error().message();
		int code = e.ok() ? 0 : e.error().code;
		must(::write(out, &code, sizeof(code)) == sizeof(code), "write code");
		must(::write(out, text.data(), text.size()) == static_cast<ssize_t>(text.size()), "write text");
		::close(out);
	});
	procs.pids.push_back(child);
	pollfd p{reports.read.get(), POLLIN, 0};
	REQUIRE(::poll(&p, 1, 5000) == 1);
	int code = -1;
	REQUIRE(::read(reports.read.get(), &code, sizeof(code)) == sizeof(code));
	char text[512] = {};
	ssize_t n = ::read(reports.read.get(), text, sizeof(text) - 1);
	REQUIRE(n > 0);
	std::string message(text, static_cast<size_t>(n));
	CAPTURE(message);
	CHECK(code == EPERM);
	CHECK(message.find("CAP_SYS_PTRACE") != std::string::npos);
	CHECK(message.find("pid=" + std::to_string(self)) != std::string::npos);
}
