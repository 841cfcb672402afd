#include "socket_iterator.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>

#include "base/log.h"
#include "base/unique_fd.h"
#include "socket_iterator_bpf.h"
#include "socket_iterator_record.h"

namespace ferry::repair {

FERRY_DECLARE_LOG_CATEGORY(logRepair);

namespace {

static_assert(kSocketFactCount == FERRY_FACT_COUNT);
static_assert(static_cast<int>(SocketFact::NoDelay) == FERRY_FACT_NODELAY);
static_assert(static_cast<int>(SocketFact::Cork) == FERRY_FACT_CORK);
static_assert(static_cast<int>(SocketFact::KeepAlive) == FERRY_FACT_KEEPALIVE);
static_assert(static_cast<int>(SocketFact::KeepIdle) == FERRY_FACT_KEEPIDLE);
static_assert(static_cast<int>(SocketFact::KeepInterval) == FERRY_FACT_KEEPINTVL);
static_assert(static_cast<int>(SocketFact::KeepCount) == FERRY_FACT_KEEPCNT);
static_assert(static_cast<int>(SocketFact::UserTimeout) == FERRY_FACT_USER_TIMEOUT);
static_assert(static_cast<int>(SocketFact::NotSentLowat) == FERRY_FACT_NOTSENT_LOWAT);
static_assert(static_cast<int>(SocketFact::WindowClamp) == FERRY_FACT_WINDOW_CLAMP);
static_assert(static_cast<int>(SocketFact::Linger2) == FERRY_FACT_LINGER2);
static_assert(static_cast<int>(SocketFact::OobInline) == FERRY_FACT_OOBINLINE);
static_assert(static_cast<int>(SocketFact::ReuseAddress) == FERRY_FACT_REUSEADDR);
static_assert(static_cast<int>(SocketFact::ReusePort) == FERRY_FACT_REUSEPORT);
static_assert(static_cast<int>(SocketFact::BufferLocks) == FERRY_FACT_BUF_LOCK);
static_assert(static_cast<int>(SocketFact::LingerOn) == FERRY_FACT_LINGER_ONOFF);
static_assert(static_cast<int>(SocketFact::LingerSeconds) == FERRY_FACT_LINGER_SECONDS);
static_assert(static_cast<int>(SocketFact::V6Only) == FERRY_FACT_V6ONLY);
static_assert(static_cast<int>(SocketFact::UrgentData) == FERRY_FACT_URG_DATA);
static_assert(static_cast<int>(SocketFact::MssClamp) == FERRY_FACT_MSS_CLAMP);
static_assert(sizeof(ferry_socket_record) == 96);

constexpr const char *kProgramName = "ferry_socket_options";
// The kernel fills its iterator buffer (8 pages) per read; a larger read
// buffer only saves a syscall when it is bigger than that.
constexpr size_t kReadBytes = 64 * 1024;

// libbpf explains a failed load on stderr by default; its lines go to the
// repair log instead, at debug level: the Error returned says what failed.
int libbpfPrint(enum libbpf_print_level level, const char *format, va_list args)
{
	if (level == LIBBPF_DEBUG || !logRepair().enabled(log::Level::Debug))
		return 0;
	char line[512];
	int n = std::vsnprintf(line, sizeof(line), format, args);
	std::string text(line, n > 0 ? std::min(static_cast<size_t>(n), sizeof(line) - 1) : 0);
	while (!text.empty() && text.back() == '\n')
		text.pop_back();
	FERRY_LOG(logRepair, Debug) << "libbpf" << kv("message", text);
	return n;
}

IteratedSocket decode(const ferry_socket_record &r)
{
	IteratedSocket s;
	s.cookie = r.cookie;
	s.family = r.family;
	s.state = r.state;
	s.hz = r.hz;
	s.known = r.known & ((1u << kSocketFactCount) - 1);
	for (size_t i = 0; i < kSocketFactCount; ++i)
		s.values[i] = r.value[i];
	// SO_LINGER is one answer: both halves, or neither.
	constexpr uint32_t linger = 1u << FERRY_FACT_LINGER_ONOFF | 1u << FERRY_FACT_LINGER_SECONDS;
	if ((s.known & linger) != linger)
		s.known &= ~linger;
	return s;
}

} // namespace

void BpfObjectDeleter::operator()(bpf_object *object) const
{
	bpf_object__close(object);
}

void BpfLinkDeleter::operator()(bpf_link *link) const
{
	bpf_link__destroy(link);
}

Result<SocketIterator> SocketIterator::load()
{
	static std::once_flag printer;
	std::call_once(printer, [] { libbpf_set_print(libbpfPrint); });

	SocketIterator it;
	bpf_object *object = bpf_object__open_mem(embedded::kSocketIteratorObject, sizeof(embedded::kSocketIteratorObject),
	                                          nullptr);
	if (!object)
		return errnoError("cannot open the embedded BPF socket iterator");
	it.object_.reset(object);
	if (int err = bpf_object__load(object); err != 0) {
		int code = -err;
		std::string what = "cannot load the BPF socket iterator";
		if (code == EPERM || code == EACCES)
			what += " (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)";
		else if (code == ENOENT || code == ESRCH || code == EINVAL || code == ENOTSUP)
			what += " (needs a kernel with BTF and the TCP iterator, Linux >= 5.15)";
		return errnoError(code, what);
	}
	bpf_program *program = bpf_object__find_program_by_name(object, kProgramName);
	if (!program)
		return makeError(std::string("the embedded BPF object has no program ") + kProgramName, ENOENT);
	bpf_link *link = bpf_program__attach_iter(program, nullptr);
	if (!link)
		return errnoError("cannot attach the BPF socket iterator");
	it.link_.reset(link);
	return it;
}

Result<const SocketIterator *> SocketIterator::shared()
{
	static const Result<SocketIterator> loaded = [] {
		Result<SocketIterator> r = load();
		if (r.ok())
			FERRY_LOG(logRepair, Debug) << "BPF socket iterator loaded";
		else
			FERRY_LOG(logRepair, Info) << "no BPF socket iterator; a census leaves the user options to getsockopt"
			                           << kv("reason", r.error().message());
		return r;
	}();
	if (!loaded.ok())
		return loaded.error();
	return &*loaded;
}

Result<std::vector<IteratedSocket>> SocketIterator::read() const
{
	UniqueFd iteration(bpf_iter_create(bpf_link__fd(link_.get())));
	if (!iteration)
		return errnoError("cannot open a BPF socket iteration");
	std::vector<IteratedSocket> sockets;
	std::vector<char> buffer(kReadBytes);
	size_t held = 0;
	for (;;) {
		ssize_t n = ::read(iteration.get(), buffer.data() + held, buffer.size() - held);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errnoError("cannot read the BPF socket iteration");
		}
		if (n == 0)
			break;
		held += static_cast<size_t>(n);
		size_t whole = held / sizeof(ferry_socket_record);
		for (size_t i = 0; i < whole; ++i) {
			ferry_socket_record record;
			std::memcpy(&record, buffer.data() + i * sizeof(record), sizeof(record));
			sockets.push_back(decode(record));
		}
		// A record split across two reads waits for its tail.
		size_t used = whole * sizeof(ferry_socket_record);
		std::memmove(buffer.data(), buffer.data() + used, held - used);
		held -= used;
	}
	if (held != 0)
		return makeError("the BPF socket iteration ended inside a record", EPROTO);
	return sockets;
}

} // namespace ferry::repair
