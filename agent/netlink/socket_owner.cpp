#include "socket_owner.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <memory>
#include <string>

#include "base/log.h"

namespace ferry::netlink {

namespace {

FERRY_LOG_CATEGORY(logOwner, "netlink")

template<typename T>
std::optional<T> parseNumber(std::string_view text)
{
	T value{};
	auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
	if (text.empty() || ec != std::errc() || end != text.data() + text.size())
		return std::nullopt;
	return value;
}

// Closes a DIR* (and the fd it owns).
struct DirCloser {
	void operator()(DIR *dir) const { ::closedir(dir); }
};
using DirPtr = std::unique_ptr<DIR, DirCloser>;

// Reads a small /proc file in one go; an empty result means it is gone.
std::optional<std::string> readProcFile(const std::string &path)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		return std::nullopt;
	char buf[1024];
	ssize_t n = ::read(fd.get(), buf, sizeof(buf));
	if (n <= 0)
		return std::nullopt;
	return std::string(buf, static_cast<size_t>(n));
}

// Adds the socket fds of one process. Returns ok and adds nothing when the
// process is gone.
Status scanProcessFds(pid_t pid, SocketOwnerMap &map)
{
	std::string path = "/proc/" + std::to_string(pid) + "/fd";
	int dirFd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirFd < 0) {
		if (errno == ENOENT || errno == ESRCH)
			return {};
		return errnoError("cannot list the fds of process " + std::to_string(pid))
			.at("phase", "map-owners").at("path", path);
	}
	DirPtr dir(::fdopendir(dirFd));
	if (!dir) {
		::close(dirFd);
		return errnoError("cannot list the fds of process " + std::to_string(pid))
			.at("phase", "map-owners").at("path", path);
	}
	// "socket:[18446744073709551615]" is 29 characters.
	char link[40];
	while (dirent *entry = ::readdir(dir.get())) {
		if (entry->d_name[0] == '.')
			continue;
		std::optional<int> fd = parseNumber<int>(entry->d_name);
		if (!fd)
			continue;
		ssize_t n = ::readlinkat(::dirfd(dir.get()), entry->d_name, link, sizeof(link));
		if (n < 0 || static_cast<size_t>(n) >= sizeof(link))
			continue; // closed meanwhile, or a path, not a socket
		if (std::optional<uint64_t> inode = detail::parseSocketLink(std::string_view(link, static_cast<size_t>(n))))
			map.add(*inode, SocketHolder{pid, *fd});
	}
	return {};
}

int sysPidfdOpen(pid_t pid, unsigned flags)
{
	return static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
}

int sysPidfdGetfd(int pidfd, int targetFd, unsigned flags)
{
	return static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd, targetFd, flags));
}

} // namespace

std::optional<uint64_t> detail::parseSocketLink(std::string_view link)
{
	constexpr std::string_view kPrefix = "socket:[";
	if (link.size() <= kPrefix.size() + 1 || link.substr(0, kPrefix.size()) != kPrefix || link.back() != ']')
		return std::nullopt;
	return parseNumber<uint64_t>(link.substr(kPrefix.size(), link.size() - kPrefix.size() - 1));
}

std::optional<pid_t> detail::parseParentPid(std::string_view statLine)
{
	// "pid (comm) state ppid ...": comm is free text, so search from the
	// last ')'.
	size_t close = statLine.rfind(')');
	if (close == std::string_view::npos || close + 4 >= statLine.size())
		return std::nullopt;
	std::string_view rest = statLine.substr(close + 2); // "S 123 ..."
	size_t space = rest.find(' ');
	if (space == std::string_view::npos)
		return std::nullopt;
	rest = rest.substr(space + 1);
	return parseNumber<pid_t>(rest.substr(0, rest.find(' ')));
}

const std::vector<SocketHolder> *SocketOwnerMap::find(uint64_t inode) const
{
	auto it = holders_.find(inode);
	return it == holders_.end() ? nullptr : &it->second;
}

void SocketOwnerMap::add(uint64_t inode, SocketHolder holder)
{
	holders_[inode].push_back(holder);
	++fdCount_;
}

Result<std::vector<pid_t>> processTree(pid_t root)
{
	if (root <= 0)
		return makeError("process tree root " + std::to_string(root) + " is not a process id", EINVAL)
			.at("phase", "map-owners");
	DirPtr proc(::opendir("/proc"));
	if (!proc)
		return errnoError("cannot list /proc").at("phase", "map-owners");

	std::vector<std::pair<pid_t, pid_t>> parentOf; // (parent, child)
	bool rootSeen = false;
	while (dirent *entry = ::readdir(proc.get())) {
		std::optional<pid_t> pid = parseNumber<pid_t>(entry->d_name);
		if (!pid)
			continue;
		std::optional<std::string> stat = readProcFile("/proc/" + std::string(entry->d_name) + "/stat");
		if (!stat)
			continue; // exited meanwhile
		rootSeen = rootSeen || *pid == root;
		if (std::optional<pid_t> parent = detail::parseParentPid(*stat))
			parentOf.emplace_back(*parent, *pid);
	}
	if (!rootSeen)
		return makeError("process " + std::to_string(root) + " does not exist", ESRCH).at("phase", "map-owners");

	std::sort(parentOf.begin(), parentOf.end());
	std::vector<pid_t> tree{root};
	// Breadth first; each process has one parent, so nothing repeats.
	for (size_t i = 0; i < tree.size(); ++i) {
		auto range = std::equal_range(parentOf.begin(), parentOf.end(), std::make_pair(tree[i], pid_t{0}),
					      [](const auto &a, const auto &b) { return a.first < b.first; });
		for (auto it = range.first; it != range.second; ++it)
			tree.push_back(it->second);
	}
	std::sort(tree.begin(), tree.end());
	return tree;
}

Result<SocketOwnerMap> mapSocketOwners(pid_t root)
{
	FERRY_TRY_ASSIGN(std::vector<pid_t> tree, processTree(root));
	SocketOwnerMap map;
	for (pid_t pid : tree)
		FERRY_TRY(scanProcessFds(pid, map));
	FERRY_LOG(logOwner, Debug) << "mapped socket owners" << kv("root", root) << kv("processes", tree.size())
				   << kv("sockets", map.socketCount()) << kv("fds", map.fdCount());
	map.setProcesses(std::move(tree));
	return map;
}

PidfdCalls PidfdCalls::kernel()
{
	return PidfdCalls{sysPidfdOpen, sysPidfdGetfd};
}

Result<UniqueFd> SocketTaker::openProcess(pid_t pid) const
{
	int raw = calls_.pidfdOpen(pid, 0);
	if (raw >= 0)
		return UniqueFd(raw);
	int code = errno;
	std::string p = std::to_string(pid);
	Error error = [&] {
		switch (code) {
		case ESRCH:
			return errnoError(code, "process " + p + " does not exist (it has exited)");
		case EINVAL:
		case ENOENT: // what Linux 6.18 answers for a thread id
			return errnoError(code, "pid " + p + " is not a process but a thread; pidfd_open needs a thread-group leader");
		case ENOSYS:
			return errnoError(code, "the kernel has no pidfd_open(2); taking sockets needs Linux 5.6 or later");
		default:
			return errnoError(code, "pidfd_open of process " + p + " failed");
		}
	}();
	return std::move(error).at("phase", "take-socket").at("pid", p);
}

Result<UniqueFd> SocketTaker::takeFrom(int pidfd, pid_t pid, int fd, uint64_t expectedInode) const
{
	std::string p = std::to_string(pid);
	std::string f = std::to_string(fd);
	auto fail = [&](Error error) {
		return std::move(error).at("phase", "take-socket").at("pid", p).at("fd", f);
	};
	int raw = calls_.pidfdGetfd(pidfd, fd, 0);
	if (raw < 0) {
		int code = errno;
		switch (code) {
		case EPERM:
			return fail(errnoError(code, "ptrace access to process " + p +
							     " was refused; taking its fds needs CAP_SYS_PTRACE, or its uid with "
							     "Yama ptrace_scope allowing it, and no LSM denial"));
		case EBADF:
			return fail(errnoError(code, "process " + p + " has no fd " + f + " (closed since discovery?)"));
		case ESRCH:
			return fail(errnoError(code, "process " + p + " exited before fd " + f + " could be taken"));
		case ENOSYS:
			return fail(errnoError(code, "the kernel has no pidfd_getfd(2); taking sockets needs Linux 5.6 or later"));
		default:
			return fail(errnoError(code, "pidfd_getfd of fd " + f + " of process " + p + " failed"));
		}
	}
	UniqueFd taken(raw);
	struct stat st{};
	if (::fstat(taken.get(), &st) < 0)
		return fail(errnoError("cannot fstat the taken fd"));
	if (!S_ISSOCK(st.st_mode))
		return fail(makeError("fd " + f + " of process " + p + " is not a socket", ENOTSOCK));
	if (expectedInode != 0 && st.st_ino != expectedInode)
		return fail(makeError("fd " + f + " of process " + p + " is socket inode " + std::to_string(st.st_ino) +
					      ", not " + std::to_string(expectedInode) +
					      ": the fd or pid was reused since discovery",
				      ESTALE));
	FERRY_LOG(logOwner, Debug) << "took socket" << kv("pid", pid) << kv("fd", fd) << kv("inode", st.st_ino);
	return taken;
}

Result<UniqueFd> SocketTaker::take(pid_t pid, int fd, uint64_t expectedInode) const
{
	FERRY_TRY_ASSIGN(UniqueFd pidfd, openProcess(pid));
	return takeFrom(pidfd.get(), pid, fd, expectedInode);
}

} // namespace ferry::netlink
