// Error and Result<T>: how failures cross module boundaries.
//
// ferry's own code does not throw. A fallible function returns Result<T>,
// which holds either a T or an Error. An Error carries:
//   - code:    a positive errno value, or 0 when the failure is not a
//              syscall's (bad input, a refused state, a protocol violation);
//   - what:    one sentence a user can act on;
//   - context: where it happened, as "key=value" fields (phase, flow,
//              netns, offset...), most specific first.
// Add context as an error travels up with Error::at().
#pragma once

#include <cerrno>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace ferry {

struct Error {
	int code = 0;
	std::string what;
	std::string context;

	// Prepends one field of context, e.g. err.at("phase", "restore").
	Error &at(std::string_view key, std::string_view value) &;
	Error &&at(std::string_view key, std::string_view value) &&;

	// "what (strerror) [context]" for logs and user-facing messages.
	std::string message() const;
};

// An Error from the current errno, with a description of the failed call.
Error errnoError(std::string what);
Error errnoError(int code, std::string what);
// An Error that is not a syscall's (code 0 unless given).
Error makeError(std::string what, int code = 0);

template<typename T>
class [[nodiscard]] Result {
public:
	Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
	Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}

	bool ok() const noexcept { return v_.index() == 0; }
	explicit operator bool() const noexcept { return ok(); }

	// Preconditions: ok() for value(), !ok() for error().
	T &value() & { return std::get<0>(v_); }
	const T &value() const & { return std::get<0>(v_); }
	T &&value() && { return std::get<0>(std::move(v_)); }
	T &operator*() & { return value(); }
	const T &operator*() const & { return value(); }
	T &&operator*() && { return std::move(*this).value(); }
	T *operator->() { return &value(); }
	const T *operator->() const { return &value(); }

	Error &error() & { return std::get<1>(v_); }
	const Error &error() const & { return std::get<1>(v_); }
	Error &&error() && { return std::get<1>(std::move(v_)); }

private:
	std::variant<T, Error> v_;
};

template<>
class [[nodiscard]] Result<void> {
public:
	Result() = default;
	Result(Error error) : error_(std::move(error)), failed_(true) {}

	bool ok() const noexcept { return !failed_; }
	explicit operator bool() const noexcept { return ok(); }

	Error &error() & { return error_; }
	const Error &error() const & { return error_; }
	Error &&error() && { return std::move(error_); }

private:
	Error error_;
	bool failed_ = false;
};

using Status = Result<void>;

} // namespace ferry

// Propagates a failed Result from the enclosing function.
//   FERRY_TRY(setOption(fd));
//   FERRY_TRY_ASSIGN(auto fd, openSocket());
#define FERRY_TRY(expr)                                                    \
	do {                                                                   \
		auto &&ferry_try_r_ = (expr);                                      \
		if (!ferry_try_r_.ok())                                            \
			return std::move(ferry_try_r_).error();                        \
	} while (0)

#define FERRY_CONCAT_INNER_(a, b) a##b
#define FERRY_CONCAT_(a, b) FERRY_CONCAT_INNER_(a, b)
#define FERRY_TRY_ASSIGN(decl, expr)                                       \
	auto FERRY_CONCAT_(ferry_try_a_, __LINE__) = (expr);                   \
	if (!FERRY_CONCAT_(ferry_try_a_, __LINE__).ok())                       \
		return std::move(FERRY_CONCAT_(ferry_try_a_, __LINE__)).error();   \
	decl = std::move(FERRY_CONCAT_(ferry_try_a_, __LINE__)).value()
