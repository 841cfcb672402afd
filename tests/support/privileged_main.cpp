// doctest main for privileged tests (network namespaces, nftables,
// TCP_REPAIR). Without root the test is skipped with exit 77, except under
// CI (CI=true), where privileged tests must run and a skip is a failure.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char **argv)
{
	if (::geteuid() != 0) {
		const char *ci = std::getenv("CI");
		if (ci && std::strcmp(ci, "true") == 0) {
			std::fprintf(stderr, "privileged test needs root, and CI=true forbids skipping\n");
			return 1;
		}
		std::fprintf(stderr, "privileged test skipped: not root\n");
		return 77;
	}
	doctest::Context context(argc, argv);
	return context.run();
}
