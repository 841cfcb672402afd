#include "process_setup.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>

#include <charconv>
#include <string>

namespace ferry::demo {

Result<uint64_t> parseByteCount(std::string_view text)
{
	uint64_t multiplier = 1;
	std::string_view digits = text;
	if (!digits.empty()) {
		char last = digits.back();
		if (last == 'k' || last == 'K')
			multiplier = 1024;
		else if (last == 'm' || last == 'M')
			multiplier = 1024 * 1024;
		if (multiplier != 1)
			digits.remove_suffix(1);
	}
	uint64_t value = 0;
	auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
	if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size() ||
	    value > UINT64_MAX / multiplier)
		return makeError("'" + std::string(text) + "' is not a byte count (like 4096, 200k or 1M)", EINVAL);
	return value * multiplier;
}

void raiseFdLimit()
{
	rlimit limit{};
	if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
		limit.rlim_cur = limit.rlim_max;
		::setrlimit(RLIMIT_NOFILE, &limit);
	}
}

Result<UniqueFd> openSignalFd()
{
	::signal(SIGPIPE, SIG_IGN);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	if (::sigprocmask(SIG_BLOCK, &set, nullptr) < 0)
		return errnoError("sigprocmask");
	UniqueFd fd(::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC));
	if (!fd)
		return errnoError("signalfd");
	return fd;
}

} // namespace ferry::demo
