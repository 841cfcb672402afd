#include "process_freeze.h"

#include <signal.h>

#include <algorithm>
#include <charconv>
#include <fstream>
#include <sstream>
#include <thread>

namespace ferry::migration {

namespace {

struct ProcStat {
	char state = '?';
	uint64_t startTime = 0;
};

// Reads state (field 3) and starttime (field 22) of /proc/PID/stat. The
// command name (field 2) is in parentheses and may contain anything, so
// parsing starts after the last ')'.
Result<ProcStat> readStat(pid_t pid)
{
	std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
	std::string line;
	if (!in || !std::getline(in, line))
		return makeError("process " + std::to_string(pid) + " does not exist", ESRCH);
	size_t close = line.rfind(')');
	if (close == std::string::npos)
		return makeError("cannot parse /proc/" + std::to_string(pid) + "/stat", EINVAL);
	std::istringstream fields(line.substr(close + 1));
	ProcStat stat;
	fields >> stat.state;
	std::string skip;
	for (int field = 4; field < 22; ++field)
		fields >> skip;
	fields >> stat.startTime;
	if (!fields)
		return makeError("cannot parse /proc/" + std::to_string(pid) + "/stat", EINVAL);
	return stat;
}

template<typename T>
bool parseNumber(std::string_view text, T &out)
{
	auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
	return ec == std::errc() && end == text.data() + text.size();
}

} // namespace

std::string ProcessRef::toString() const
{
	return std::to_string(pid) + "@" + std::to_string(startTime);
}

Result<ProcessRef> ProcessRef::parse(std::string_view text)
{
	size_t at = text.find('@');
	ProcessRef ref;
	if (at == std::string_view::npos || !parseNumber(text.substr(0, at), ref.pid) ||
	    !parseNumber(text.substr(at + 1), ref.startTime) || ref.pid <= 0)
		return makeError("'" + std::string(text) + "' is not pid@starttime", EINVAL);
	return ref;
}

Result<ProcessRef> processRef(pid_t pid)
{
	FERRY_TRY_ASSIGN(ProcStat stat, readStat(pid));
	return ProcessRef{pid, stat.startTime};
}

bool isSameProcess(const ProcessRef &process)
{
	auto stat = readStat(process.pid);
	return stat.ok() && stat->startTime == process.startTime;
}

Status stopProcesses(const std::vector<ProcessRef> &processes, std::chrono::milliseconds timeout)
{
	for (const ProcessRef &p : processes) {
		if (!isSameProcess(p))
			return makeError("process " + p.toString() + " is gone", ESRCH);
		if (::kill(p.pid, SIGSTOP) < 0)
			return errnoError("cannot stop process " + std::to_string(p.pid));
	}
	auto deadline = std::chrono::steady_clock::now() + timeout;
	for (const ProcessRef &p : processes) {
		for (;;) {
			auto stat = readStat(p.pid);
			if (!stat.ok() || stat->startTime != p.startTime)
				return makeError("process " + p.toString() + " went away while being stopped", ESRCH);
			// 'T' stopped; 't' traced (stopped by a debugger) counts too.
			if (stat->state == 'T' || stat->state == 't')
				break;
			if (std::chrono::steady_clock::now() > deadline)
				return makeError("process " + std::to_string(p.pid) + " did not stop in time (state " +
							 std::string(1, stat->state) + ")",
						 ETIMEDOUT);
			std::this_thread::sleep_for(std::chrono::microseconds(200));
		}
	}
	return {};
}

void continueProcesses(const std::vector<ProcessRef> &processes)
{
	for (const ProcessRef &p : processes)
		if (isSameProcess(p))
			::kill(p.pid, SIGCONT);
}

bool waitUntilGone(const ProcessRef &process, std::chrono::milliseconds timeout)
{
	auto deadline = std::chrono::steady_clock::now() + timeout;
	for (;;) {
		// A killed child of ours stays a zombie until reaped; its fds are
		// closed already, which is all that matters here.
		auto stat = readStat(process.pid);
		if (!stat.ok() || stat->startTime != process.startTime || stat->state == 'Z' || stat->state == 'X')
			return true;
		if (std::chrono::steady_clock::now() >= deadline)
			return false;
		std::this_thread::sleep_for(std::chrono::milliseconds(1));
	}
}

void killProcesses(const std::vector<ProcessRef> &processes, std::chrono::milliseconds timeout)
{
	for (const ProcessRef &p : processes)
		if (isSameProcess(p))
			::kill(p.pid, SIGKILL);
	auto deadline = std::chrono::steady_clock::now() + timeout;
	for (const ProcessRef &p : processes) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		waitUntilGone(p, std::max(left, std::chrono::milliseconds(0)));
	}
}

std::string formatProcesses(const std::vector<ProcessRef> &processes)
{
	std::string out;
	for (const ProcessRef &p : processes) {
		if (!out.empty())
			out.push_back(' ');
		out += p.toString();
	}
	return out;
}

Result<std::vector<ProcessRef>> parseProcesses(std::string_view text)
{
	std::vector<ProcessRef> out;
	while (!text.empty()) {
		size_t space = text.find(' ');
		std::string_view item = text.substr(0, space);
		text = space == std::string_view::npos ? std::string_view{} : text.substr(space + 1);
		if (item.empty())
			continue;
		FERRY_TRY_ASSIGN(ProcessRef ref, ProcessRef::parse(item));
		out.push_back(ref);
	}
	return out;
}

} // namespace ferry::migration
