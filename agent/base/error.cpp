#include "error.h"

#include <cstring>

namespace ferry {

namespace {

void prependField(std::string &context, std::string_view key, std::string_view value)
{
	std::string field;
	field.reserve(key.size() + value.size() + 1);
	field.append(key).append("=").append(value);
	if (!context.empty())
		field.append(" ").append(context);
	context = std::move(field);
}

} // namespace

Error &Error::at(std::string_view key, std::string_view value) &
{
	prependField(context, key, value);
	return *this;
}

Error &&Error::at(std::string_view key, std::string_view value) &&
{
	prependField(context, key, value);
	return std::move(*this);
}

std::string Error::message() const
{
	std::string out = what;
	if (code != 0)
		out.append(": ").append(std::strerror(code));
	if (!context.empty())
		out.append(" [").append(context).append("]");
	return out;
}

Error errnoError(std::string what)
{
	return Error{errno, std::move(what), {}};
}

Error errnoError(int code, std::string what)
{
	return Error{code, std::move(what), {}};
}

Error makeError(std::string what, int code)
{
	return Error{code, std::move(what), {}};
}

} // namespace ferry
