// A minimal workload for the migration tests, with two modes.
//
// handoff SOCKET [options]: the workload side of the handoff protocol
// (docs/workloads.md). Connects, says hello, then prints one line to stdout
// for each thing that happens, so a test can follow it:
//   "hello <pid>"  after sending hello
//   "child <pid>"  the pid of the child started by --spawn-child
//   "prepare <migration>", "resume", "exit", "eof", "unknown <json>"
// It answers prepare with ready (unless --silent), carries on after resume
// and exits 0 after exit, 3 at end of stream.
//   --name NAME          the hello's name
//   --announce-pid PID   lie about its pid in hello
//   --state TEXT         the state blob (raw bytes; \xNN escapes allowed)
//   --silent             never answer prepare
//   --spawn-child        fork a child that sleeps until its parent dies
//
// probe REPORT [--stay]: what a launched workload sees. Writes key=value
// lines to REPORT (atomically, via a rename), writes "fd<N> <name>\n" into
// every connected socket it inherited, then exits 0 (or, with --stay,
// waits for a signal).
#include <fcntl.h>
#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "base/base64.h"

namespace {

[[noreturn]] void die(const char *what)
{
	std::fprintf(stderr, "test_workload: %s: %s\n", what, std::strerror(errno));
	std::exit(2);
}

void say(const std::string &line)
{
	std::printf("%s\n", line.c_str());
	std::fflush(stdout);
}

std::string unescape(const std::string &text)
{
	std::string out;
	for (size_t i = 0; i < text.size(); i++) {
		if (text[i] == '\\' && i + 3 < text.size() && text[i + 1] == 'x') {
			out.push_back(static_cast<char>(std::stoi(text.substr(i + 2, 2), nullptr, 16)));
			i += 3;
		} else {
			out.push_back(text[i]);
		}
	}
	return out;
}

void sendJson(int fd, const std::string &json)
{
	if (::send(fd, json.data(), json.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(json.size()))
		die("send");
}

int handoff(int argc, char **argv)
{
	std::string path = argv[2];
	std::string name = "test";
	long announcedPid = ::getpid();
	std::string state;
	bool silent = false;
	bool spawnChild = false;
	for (int i = 3; i < argc; i++) {
		std::string arg = argv[i];
		if (arg == "--name" && i + 1 < argc)
			name = argv[++i];
		else if (arg == "--announce-pid" && i + 1 < argc)
			announcedPid = std::atol(argv[++i]);
		else if (arg == "--state" && i + 1 < argc)
			state = unescape(argv[++i]);
		else if (arg == "--silent")
			silent = true;
		else if (arg == "--spawn-child")
			spawnChild = true;
		else
			return 64;
	}

	if (spawnChild) {
		pid_t parent = ::getpid();
		pid_t child = ::fork();
		if (child < 0)
			die("fork");
		if (child == 0) {
			::prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (::getppid() != parent)
				::_exit(1);
			for (;;)
				::pause();
		}
		say("child " + std::to_string(child));
	}

	int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	sockaddr_un address{};
	address.sun_family = AF_UNIX;
	std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
	if (::connect(fd, reinterpret_cast<sockaddr *>(&address), sizeof(address)) != 0)
		die("connect");
	sendJson(fd, "{\"hello\":{\"pid\":" + std::to_string(announcedPid) + ",\"name\":\"" + name + "\"}}");
	say("hello " + std::to_string(announcedPid));

	std::vector<char> buffer(1 << 16);
	for (;;) {
		ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
		if (n < 0)
			die("recv");
		if (n == 0) {
			say("eof");
			return 3;
		}
		std::string packet(buffer.data(), static_cast<size_t>(n));
		rapidjson::Document doc;
		doc.Parse(packet.data(), packet.size());
		if (doc.HasParseError() || !doc.IsObject() || doc.MemberCount() != 1) {
			say("unknown " + packet);
			continue;
		}
		std::string kind = doc.MemberBegin()->name.GetString();
		if (kind == "prepare") {
			const auto &body = doc.MemberBegin()->value;
			std::string migration = body.IsObject() && body.HasMember("migration") && body["migration"].IsString()
							? body["migration"].GetString()
							: "?";
			say("prepare " + migration);
			if (!silent)
				sendJson(fd, "{\"ready\":{\"state\":\"" + ferry::base64Encode(state) + "\"}}");
		} else if (kind == "resume") {
			say("resume");
		} else if (kind == "exit") {
			say("exit");
			return 0;
		} else {
			say("unknown " + packet);
		}
	}
}

std::string readFile(const std::string &path)
{
	std::ifstream in(path, std::ios::binary);
	std::stringstream s;
	s << in.rdbuf();
	return s.str();
}

std::string env(const char *name)
{
	const char *value = std::getenv(name);
	return value ? value : "<unset>";
}

int probe(int argc, char **argv)
{
	std::string report = argv[2];
	bool stay = argc > 3 && std::string(argv[3]) == "--stay";
	std::ostringstream out;

	out << "pid=" << ::getpid() << "\n";
	out << "listen_pid=" << env("LISTEN_PID") << "\n";
	out << "listen_fds=" << env("LISTEN_FDS") << "\n";
	out << "listen_fdnames=" << env("LISTEN_FDNAMES") << "\n";
	out << "extra=" << env("FERRY_TEST_EXTRA") << "\n";
	std::string manifest = env("FERRY_MANIFEST");
	out << "manifest_path=" << manifest << "\n";
	out << "manifest=" << readFile(manifest) << "\n";
	struct stat st{};
	out << "manifest_mode=" << (::stat(manifest.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0) << "\n";
	if (::stat("/proc/self/ns/net", &st) == 0)
		out << "netns=" << st.st_ino << "\n";
	out << "session_leader=" << (::getsid(0) == ::getpid()) << "\n";
	struct sigaction action{};
	::sigaction(SIGPIPE, nullptr, &action);
	out << "sigpipe_default=" << (action.sa_handler == SIG_DFL) << "\n";
	sigset_t mask;
	::sigprocmask(SIG_SETMASK, nullptr, &mask);
	out << "sigterm_blocked=" << ::sigismember(&mask, SIGTERM) << "\n";

	// The fds this process has, from /proc (without the directory's own).
	DIR *dir = ::opendir("/proc/self/fd");
	std::vector<int> fds;
	if (dir) {
		while (dirent *entry = ::readdir(dir))
			if (entry->d_name[0] != '.' && std::atoi(entry->d_name) != ::dirfd(dir))
				fds.push_back(std::atoi(entry->d_name));
		::closedir(dir);
	}
	std::sort(fds.begin(), fds.end());
	out << "open_fds=";
	for (size_t i = 0; i < fds.size(); i++)
		out << (i ? "," : "") << fds[i];
	out << "\n";

	std::vector<std::string> names;
	std::stringstream nameList(env("LISTEN_FDNAMES"));
	for (std::string name; std::getline(nameList, name, ':');)
		names.push_back(name);
	int count = std::atoi(env("LISTEN_FDS").c_str());
	for (int i = 0; i < count; i++) {
		int fd = 3 + i;
		int flags = ::fcntl(fd, F_GETFD);
		int accepting = 0;
		socklen_t length = sizeof(accepting);
		::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &length);
		struct stat fdStat{};
		::fstat(fd, &fdStat);
		out << "fd" << fd << "=inode:" << fdStat.st_ino << ",cloexec:" << ((flags & FD_CLOEXEC) != 0)
		    << ",listening:" << accepting << "\n";
		if (!accepting && flags >= 0) {
			std::string line = "fd" + std::to_string(fd) + " " + (i < static_cast<int>(names.size()) ? names[i] : "?") + "\n";
			(void)!::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
		}
	}

	std::string text = out.str();
	std::string temporary = report + ".tmp";
	{
		std::ofstream file(temporary, std::ios::binary);
		file << text;
		if (!file)
			die("write report");
	}
	if (::rename(temporary.c_str(), report.c_str()) != 0)
		die("rename report");
	if (stay)
		for (;;)
			::pause();
	return 0;
}

} // namespace

int main(int argc, char **argv)
{
	if (argc >= 3 && std::string(argv[1]) == "handoff")
		return handoff(argc, argv);
	if (argc >= 3 && std::string(argv[1]) == "probe")
		return probe(argc, argv);
	std::fprintf(stderr, "usage: %s handoff SOCKET [options] | probe REPORT [--stay]\n", argv[0]);
	return 64;
}
