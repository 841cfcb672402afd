// UniqueFd: the one owner of a file descriptor.
//
// Move-only. The destructor closes the descriptor. A function that takes
// ownership of a descriptor takes a UniqueFd by value; a function that only
// uses it takes `int` (borrowed, valid for the duration of the call).
#pragma once

#include <unistd.h>

#include <utility>

namespace ferry {

class UniqueFd {
public:
	UniqueFd() noexcept = default;
	explicit UniqueFd(int fd) noexcept : fd_(fd) {}
	~UniqueFd() { reset(); }

	UniqueFd(UniqueFd &&other) noexcept : fd_(other.release()) {}
	UniqueFd &operator=(UniqueFd &&other) noexcept
	{
		if (this != &other)
			reset(other.release());
		return *this;
	}
	UniqueFd(const UniqueFd &) = delete;
	UniqueFd &operator=(const UniqueFd &) = delete;

	int get() const noexcept { return fd_; }
	bool isValid() const noexcept { return fd_ >= 0; }
	explicit operator bool() const noexcept { return isValid(); }

	// Gives up ownership without closing; the caller now owns the result.
	[[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

	// Closes the current descriptor (if any) and takes ownership of `fd`.
	void reset(int fd = -1) noexcept
	{
		int old = std::exchange(fd_, fd);
		if (old >= 0)
			::close(old);
	}

private:
	int fd_ = -1;
};

} // namespace ferry
