#include "netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ferry {

namespace {

Result<std::string> netnsPath(std::string_view spec)
{
	if (spec.empty() || spec == "self")
		return std::string("/proc/thread-self/ns/net");
	if (spec.front() == '/')
		return std::string(spec);
	if (spec.substr(0, 4) == "pid:") {
		std::string_view digits = spec.substr(4);
		pid_t pid = 0;
		auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), pid);
		if (ec != std::errc() || end != digits.data() + digits.size() || pid <= 0)
			return makeError("netns spec '" + std::string(spec) + "' does not name a process id", EINVAL);
		return "/proc/" + std::to_string(pid) + "/ns/net";
	}
	if (spec.find('/') != std::string_view::npos || spec == "." || spec == "..")
		return makeError("netns name '" + std::string(spec) + "' is not a valid name", EINVAL);
	return "/run/netns/" + std::string(spec);
}

} // namespace

Result<UniqueFd> openNetns(std::string_view spec)
{
	FERRY_TRY_ASSIGN(std::string path, netnsPath(spec));
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		return errnoError("cannot open network namespace").at("netns", path);
	return fd;
}

Result<ino_t> netnsInode(int netnsFd)
{
	struct stat st {};
	if (::fstat(netnsFd, &st) < 0)
		return errnoError("cannot stat network namespace fd");
	return st.st_ino;
}

Result<ScopedNetns> ScopedNetns::enter(int netnsFd)
{
	UniqueFd original(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
	if (!original)
		return errnoError("cannot open the calling thread's network namespace");
	FERRY_TRY(detail::enterNetns(netnsFd));
	return ScopedNetns(std::move(original));
}

ScopedNetns::~ScopedNetns()
{
	if (!original_)
		return; // moved from
	if (::setns(original_.get(), CLONE_NEWNET) < 0) {
		std::fprintf(stderr, "ferry: cannot return to the original network namespace: %s; aborting\n",
			     std::strerror(errno));
		std::abort();
	}
}

namespace detail {

Status enterNetns(int netnsFd)
{
	if (::setns(netnsFd, CLONE_NEWNET) < 0)
		return errnoError("setns into network namespace failed");
	return {};
}

} // namespace detail

} // namespace ferry
