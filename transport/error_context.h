// Context for image errors (internal to transport/). Error::at() prepends;
// the codec appends instead, so that a message reads from the most
// specific field to the least: "field=... record=... offset=... phase=...".
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace ferry::transport {

inline Error &appendContext(Error &error, std::string_view key, std::string_view value)
{
	if (!error.context.empty())
		error.context += ' ';
	error.context.append(key).append("=").append(value);
	return error;
}

} // namespace ferry::transport
