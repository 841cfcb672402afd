#include "container/container.h"

namespace ferry::container {

const char *toString(Runtime runtime)
{
	switch (runtime) {
	case Runtime::Runc:
		return "runc";
	case Runtime::Podman:
		return "podman";
	}
	return "unknown";
}

std::optional<Runtime> parseRuntime(std::string_view name)
{
	if (name == "runc")
		return Runtime::Runc;
	if (name == "podman")
		return Runtime::Podman;
	return std::nullopt;
}

namespace {

bool startsWithDash(const std::string &value)
{
	return !value.empty() && value.front() == '-';
}

// Absolute, no ':' or ',' (podman's mount syntax), no NUL, no ".."
// component (a path that climbs out of what it names).
std::optional<std::string> mountPathProblem(const std::string &path)
{
	if (path.empty() || path.front() != '/')
		return "expected an absolute path";
	if (path.find_first_of(std::string_view(":,\0", 3)) != std::string::npos)
		return "must not contain ':', ',' or NUL";
	for (size_t begin = 1; begin <= path.size();) {
		size_t end = path.find('/', begin);
		if (end == std::string::npos)
			end = path.size();
		if (path.compare(begin, end - begin, "..") == 0)
			return "must not have a '..' component";
		begin = end + 1;
	}
	return std::nullopt;
}

} // namespace

std::optional<SpecProblem> findUnsafeArgument(const ContainerSpec &spec)
{
	constexpr const char *kNoOption = "must not start with '-'";
	if (startsWithDash(spec.name))
		return SpecProblem{"name", kNoOption};
	if (startsWithDash(spec.image))
		return SpecProblem{"image", kNoOption};
	if (!spec.bundle.empty() && spec.bundle.front() != '/')
		return SpecProblem{"bundle", "expected an absolute path"};
	if (startsWithDash(spec.user))
		return SpecProblem{"user", kNoOption};
	if (!spec.workingDirectory.empty() && spec.workingDirectory.front() != '/')
		return SpecProblem{"workingDirectory", "expected an absolute path"};
	if (!spec.command.empty() && startsWithDash(spec.command.front()))
		return SpecProblem{"command[0]", kNoOption};
	for (size_t i = 0; i < spec.mounts.size(); i++) {
		std::string at = "mounts[" + std::to_string(i) + "].";
		if (auto problem = mountPathProblem(spec.mounts[i].source))
			return SpecProblem{at + "source", *problem};
		if (auto problem = mountPathProblem(spec.mounts[i].destination))
			return SpecProblem{at + "destination", *problem};
	}
	return std::nullopt;
}

} // namespace ferry::container
