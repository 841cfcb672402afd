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

} // namespace ferry::container
