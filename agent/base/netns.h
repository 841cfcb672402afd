// Network namespace entry that never leaves the caller in the wrong netns.
//
// runInNetns(netns, fn) runs `fn` on a dedicated thread that has joined the
// namespace with setns(2) and ends when `fn` returns. The calling thread's
// namespace never changes, so an early return, an error or an exception in
// `fn` cannot leak the namespace into unrelated work. Sockets are bound to
// the namespace they were created in, so a socket made inside `fn` may be
// returned and used from any thread afterwards.
//
// The cost is one thread creation per call (tens of microseconds): batch
// work for many sockets into one call, or, where the work must stay on the
// calling thread (an HTTP handler decoding an upload as it arrives), use
// ScopedNetns.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <optional>
#include <thread>
#include <type_traits>

#include "error.h"
#include "unique_fd.h"

namespace ferry {

// Opens a network namespace for setns(2). `spec` is one of:
//   "name"         a namespace made by `ip netns add` (/run/netns/name)
//   "/some/path"   a bind-mounted namespace or /proc/PID/ns/net
//   "pid:1234"     the namespace of that process
//   "" or "self"   the caller's current namespace
Result<UniqueFd> openNetns(std::string_view spec);

// The inode that identifies a namespace: two fds with the same inode refer
// to the same namespace.
Result<ino_t> netnsInode(int netnsFd);

namespace detail {
Status enterNetns(int netnsFd);
}

// Moves the calling thread into a network namespace for the guard's
// lifetime and back into the namespace it came from when it ends.
//
//   FERRY_TRY_ASSIGN(ScopedNetns inside, ScopedNetns::enter(netnsFd));
//   ... sockets created here belong to the target namespace ...
//   // back in the original namespace at the end of the scope
//
// If the thread cannot return to its original namespace the process
// aborts: carrying on in the wrong namespace would silently misdirect
// every later socket and netlink call of that thread. Move-only; not to be
// moved across threads.
class ScopedNetns {
public:
	static Result<ScopedNetns> enter(int netnsFd);

	ScopedNetns(ScopedNetns &&other) noexcept = default;
	ScopedNetns &operator=(ScopedNetns &&) = delete;
	ScopedNetns(const ScopedNetns &) = delete;
	~ScopedNetns();

private:
	explicit ScopedNetns(UniqueFd original) : original_(std::move(original)) {}
	UniqueFd original_;
};

// Runs fn() inside the namespace `netnsFd` (borrowed for the call) and
// returns its result. fn returns Status or Result<T>; a failure to enter the
// namespace is returned as an Error of the same type.
template<typename Fn>
auto runInNetns(int netnsFd, Fn &&fn) -> std::invoke_result_t<Fn>
{
	using R = std::invoke_result_t<Fn>;
	std::optional<R> result;
	std::thread worker([&] {
		Status entered = detail::enterNetns(netnsFd);
		if (!entered.ok()) {
			result.emplace(std::move(entered).error());
			return;
		}
		result.emplace(fn());
	});
	worker.join();
	return std::move(*result);
}

} // namespace ferry
