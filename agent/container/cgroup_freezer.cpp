#include "container/cgroup_freezer.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <thread>

#include "base/log.h"
#include "base/unique_fd.h"
#include "container/file_text.h"

namespace ferry::container {

namespace {

FERRY_LOG_CATEGORY(logFreezer, "container")

// Between two looks at a freezing v1 cgroup (v2 is woken by the kernel):
// short at first, because every millisecond here is blackout and most
// freezes end within a scheduler tick or two; then growing, because a
// cgroup that is still not frozen waits for a task to wake from a sleep.
constexpr std::chrono::microseconds kFirstPoll{100};
constexpr int kShortPolls = 30;
constexpr std::chrono::microseconds kLongestPoll{10000};

bool exists(const std::string &path)
{
	struct stat st{};
	return ::stat(path.c_str(), &st) == 0;
}

bool isV2(const std::string &dir)
{
	return exists(dir + "/cgroup.freeze");
}

std::string_view trim(std::string_view s)
{
	while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
		s.remove_suffix(1);
	return s;
}

// "frozen 1" among cgroup.events' lines.
bool eventsSayFrozen(std::string_view events)
{
	size_t at = 0;
	while (at < events.size()) {
		size_t end = events.find('\n', at);
		std::string_view line = events.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
		if (trim(line) == "frozen 1")
			return true;
		if (end == std::string_view::npos)
			break;
		at = end + 1;
	}
	return false;
}

std::string decodeOctal(std::string_view s)
{
	std::string out;
	for (size_t i = 0; i < s.size(); i++) {
		if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3') {
			int value = (s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0');
			out += static_cast<char>(value);
			i += 3;
			continue;
		}
		out += s[i];
	}
	return out;
}

std::vector<std::string_view> splitWords(std::string_view line)
{
	std::vector<std::string_view> out;
	size_t at = 0;
	while (at < line.size()) {
		size_t start = line.find_first_not_of(" \t\n", at);
		if (start == std::string_view::npos)
			break;
		size_t end = line.find_first_of(" \t\n", start);
		out.push_back(line.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
		at = end == std::string_view::npos ? line.size() : end;
	}
	return out;
}

bool hasOption(std::string_view options, std::string_view wanted)
{
	size_t at = 0;
	for (;;) {
		size_t comma = options.find(',', at);
		if (options.substr(at, comma == std::string_view::npos ? std::string_view::npos : comma - at) == wanted)
			return true;
		if (comma == std::string_view::npos)
			return false;
		at = comma + 1;
	}
}

// The directory of cgroup `path` under a mount of `mountRoot` at
// `mountPoint`; empty when the cgroup is outside what the mount shows.
std::string directoryOf(const CgroupMount &mount, const std::string &path)
{
	if (mount.root == "/")
		return path == "/" ? mount.mountPoint : mount.mountPoint + path;
	if (path == mount.root)
		return mount.mountPoint;
	if (path.compare(0, mount.root.size(), mount.root) == 0 && path.size() > mount.root.size() &&
	    path[mount.root.size()] == '/')
		return mount.mountPoint + path.substr(mount.root.size());
	return {};
}

Status waitFrozen(const std::string &dir, bool v2, std::chrono::steady_clock::time_point deadline)
{
	// v2 announces a change of cgroup.events with POLLPRI on an fd that
	// has read the file (kernfs compares the event count at the last
	// read), so the file is read and polled through one fd. v1 has no
	// notification: it is polled with growing sleeps.
	UniqueFd events;
	if (v2) {
		events.reset(::open((dir + "/cgroup.events").c_str(), O_RDONLY | O_CLOEXEC));
		if (!events)
			return errnoError("cannot open").at("file", dir + "/cgroup.events");
	}
	std::chrono::microseconds pause = kFirstPoll;
	for (int polls = 0;; polls++) {
		bool frozen = false;
		if (v2) {
			char buffer[256];
			ssize_t n = ::pread(events.get(), buffer, sizeof(buffer) - 1, 0);
			if (n < 0)
				return errnoError("cannot read").at("file", dir + "/cgroup.events");
			frozen = eventsSayFrozen(std::string_view(buffer, static_cast<size_t>(n)));
		} else {
			FERRY_TRY_ASSIGN(frozen, isFrozen(dir));
		}
		if (frozen)
			return {};
		auto now = std::chrono::steady_clock::now();
		if (now >= deadline)
			return makeError("the cgroup did not freeze in time", ETIMEDOUT).at("cgroup", dir);
		auto wait = std::min(pause, std::chrono::duration_cast<std::chrono::microseconds>(deadline - now));
		if (v2) {
			// The notification wakes us; the timeout only bounds a missed one.
			pollfd p{events.get(), POLLPRI, 0};
			::poll(&p, 1, static_cast<int>(std::max<long long>(1, wait.count() / 1000)));
		} else {
			std::this_thread::sleep_for(wait);
		}
		if (polls >= kShortPolls)
			pause = std::min(pause * 2, kLongestPoll);
	}
}

} // namespace

std::vector<CgroupMembership> parseProcCgroup(std::string_view text)
{
	std::vector<CgroupMembership> out;
	size_t at = 0;
	while (at < text.size()) {
		size_t end = text.find('\n', at);
		std::string_view line = text.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
		at = end == std::string_view::npos ? text.size() : end + 1;
		size_t first = line.find(':');
		size_t second = first == std::string_view::npos ? first : line.find(':', first + 1);
		if (second == std::string_view::npos)
			continue;
		CgroupMembership m;
		auto [ptr, ec] = std::from_chars(line.data(), line.data() + first, m.hierarchy);
		if (ec != std::errc() || ptr != line.data() + first)
			continue;
		m.controllers = std::string(line.substr(first + 1, second - first - 1));
		m.path = std::string(line.substr(second + 1));
		out.push_back(std::move(m));
	}
	return out;
}

std::vector<CgroupMount> parseCgroupMounts(std::string_view mountinfo)
{
	std::vector<CgroupMount> out;
	size_t at = 0;
	while (at < mountinfo.size()) {
		size_t end = mountinfo.find('\n', at);
		std::string_view line =
			mountinfo.substr(at, end == std::string_view::npos ? std::string_view::npos : end - at);
		at = end == std::string_view::npos ? mountinfo.size() : end + 1;
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		std::vector<std::string_view> words = splitWords(line);
		size_t dash = 6;
		while (dash < words.size() && words[dash] != "-")
			dash++;
		if (words.size() < 6 || dash + 2 >= words.size())
			continue;
		std::string_view type = words[dash + 1];
		if (type != "cgroup" && type != "cgroup2")
			continue;
		CgroupMount m;
		m.root = decodeOctal(words[3]);
		m.mountPoint = decodeOctal(words[4]);
		m.v2 = type == "cgroup2";
		m.options = std::string(dash + 3 < words.size() ? words[dash + 3] : std::string_view());
		out.push_back(std::move(m));
	}
	return out;
}

std::vector<std::string> freezerCandidates(const std::vector<CgroupMembership> &memberships,
					   const std::vector<CgroupMount> &mounts)
{
	std::vector<std::string> v2, v1;
	for (const CgroupMembership &m : memberships) {
		bool unified = m.hierarchy == 0 && m.controllers.empty();
		bool freezer = !unified && hasOption(m.controllers, "freezer");
		if ((!unified && !freezer) || m.path == "/" || m.path.empty())
			continue;
		for (const CgroupMount &mount : mounts) {
			if (unified != mount.v2 || (freezer && !hasOption(mount.options, "freezer")))
				continue;
			std::string dir = directoryOf(mount, m.path);
			if (dir.empty())
				continue;
			(unified ? v2 : v1).push_back(std::move(dir));
			break;
		}
	}
	v2.insert(v2.end(), v1.begin(), v1.end());
	return v2;
}

Result<std::string> freezerCgroupOf(pid_t pid)
{
	std::string procPath = "/proc/" + std::to_string(pid) + "/cgroup";
	auto text = readFile(procPath);
	if (!text)
		return std::move(text).error().at("pid", std::to_string(pid));
	FERRY_TRY_ASSIGN(std::string mountinfo, readFile("/proc/self/mountinfo"));
	std::vector<std::string> candidates = freezerCandidates(parseProcCgroup(*text), parseCgroupMounts(mountinfo));
	for (const std::string &dir : candidates)
		if (exists(dir + "/cgroup.freeze") || exists(dir + "/freezer.state"))
			return dir;
	return makeError("the process is in no cgroup that can be frozen (no cgroup.freeze, no v1 freezer, or a root cgroup)",
			 ENOENT)
		.at("pid", std::to_string(pid));
}

Result<bool> isFrozen(const std::string &dir)
{
	if (isV2(dir)) {
		FERRY_TRY_ASSIGN(std::string events, readFile(dir + "/cgroup.events"));
		return eventsSayFrozen(events);
	}
	FERRY_TRY_ASSIGN(std::string state, readFile(dir + "/freezer.state"));
	return trim(state) == "FROZEN";
}

Status freezeCgroup(const std::string &dir, std::chrono::milliseconds timeout)
{
	auto start = std::chrono::steady_clock::now();
	bool v2 = isV2(dir);
	if (!v2 && !exists(dir + "/freezer.state"))
		return makeError("not a cgroup with a freezer (no cgroup.freeze, no freezer.state)", ENOENT).at("cgroup", dir);
	FERRY_TRY(writeFile(dir + (v2 ? "/cgroup.freeze" : "/freezer.state"), v2 ? "1" : "FROZEN", WriteMode::Control));
	Status waited = waitFrozen(dir, v2, start + timeout);
	if (!waited.ok()) {
		// Half frozen is the worst state to leave a workload in: some
		// tasks stopped, the others blocked on them.
		Status thawed = thawCgroup(dir);
		if (!thawed.ok())
			FERRY_LOG(logFreezer, Error) << "cannot thaw after a failed freeze" << kv("cgroup", dir)
						     << kv("error", thawed.error().message());
		return std::move(waited).error().at("timeout_ms", std::to_string(timeout.count()));
	}
	FERRY_LOG(logFreezer, Debug)
		<< "frozen" << kv("cgroup", dir)
		<< kv("us", std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start)
				    .count());
	return {};
}

Status thawCgroup(const std::string &dir)
{
	if (isV2(dir))
		return writeFile(dir + "/cgroup.freeze", "0", WriteMode::Control);
	if (!exists(dir + "/freezer.state"))
		return makeError("not a cgroup with a freezer (no cgroup.freeze, no freezer.state)", ENOENT).at("cgroup", dir);
	return writeFile(dir + "/freezer.state", "THAWED", WriteMode::Control);
}

Result<std::vector<pid_t>> cgroupProcesses(const std::string &dir)
{
	FERRY_TRY_ASSIGN(std::string text, readFile(dir + "/cgroup.procs"));
	std::vector<pid_t> out;
	for (std::string_view item : splitWords(text)) {
		pid_t pid = 0;
		auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), pid);
		if (ec == std::errc() && ptr == item.data() + item.size() && pid > 0)
			out.push_back(pid);
	}
	return out;
}

} // namespace ferry::container
