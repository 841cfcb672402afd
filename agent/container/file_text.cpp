#include "container/file_text.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "base/unique_fd.h"

namespace ferry::container {

Result<std::string> readFile(const std::string &path)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		return errnoError("cannot open").at("file", path);
	std::string out;
	char buffer[16384];
	for (;;) {
		ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errnoError("cannot read").at("file", path);
		if (n == 0)
			return out;
		out.append(buffer, static_cast<size_t>(n));
	}
}

Status writeFile(const std::string &path, std::string_view text, WriteMode mode)
{
	int flags = mode == WriteMode::Replace ? O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC : O_WRONLY | O_CLOEXEC;
	UniqueFd fd(::open(path.c_str(), flags, 0600));
	if (!fd)
		return errnoError(mode == WriteMode::Replace ? "cannot create" : "cannot open").at("file", path);
	if (mode == WriteMode::Control) {
		ssize_t n;
		do
			n = ::write(fd.get(), text.data(), text.size());
		while (n < 0 && errno == EINTR);
		if (n != static_cast<ssize_t>(text.size()))
			return errnoError(n < 0 ? errno : EIO, "cannot write").at("file", path);
		return {};
	}
	size_t done = 0;
	while (done < text.size()) {
		ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return errnoError(n < 0 ? errno : EIO, "cannot write").at("file", path);
		done += static_cast<size_t>(n);
	}
	if (::close(fd.release()) != 0)
		return errnoError("cannot write").at("file", path);
	return {};
}

} // namespace ferry::container
