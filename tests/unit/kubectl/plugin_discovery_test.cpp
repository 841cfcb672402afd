// The real kubectl finds the plugin and runs it: `kubectl plugin list`
// lists kubectl-ferry from PATH, and `kubectl ferry ...` runs it with its
// arguments and environment untouched.
//
// kubectl must be installed (scripts/install-deps.sh installs Debian's
// kubernetes-client): a missing kubectl fails this test rather than skip
// it, because plugin discovery is what the plugin's name and install
// instructions promise. No cluster is needed: neither `plugin list` nor
// running a plugin talks to an API server.
#include <filesystem>
#include <sstream>

#include "kubectl_test_support.h"

extern char **environ;

using namespace ferry;
using ferry::test::contains;
using ferry::test::fixture;
using ferry::test::Run;
namespace fs = std::filesystem;

namespace {

// kubectl as the test's own PATH finds it; "" when there is none.
std::string findKubectl()
{
	const char *path = std::getenv("PATH");
	std::istringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (std::string dir; std::getline(dirs, dir, ':');) {
		if (dir.empty())
			continue;
		fs::path candidate = fs::path(dir) / "kubectl";
		if (::access(candidate.c_str(), X_OK) == 0)
			return candidate.string();
	}
	return {};
}

// A clean environment where PATH holds only the build directory of
// kubectl-ferry, first, and a directory with nothing but kubectl in it; HOME
// is empty, so no kubeconfig or plugin of the machine's user plays a part.
struct CleanKubectl {
	test::TempDir dir;
	std::string kubectl;
	std::string pluginDir = fs::path(KUBECTL_FERRY_BINARY).parent_path().string();
	std::vector<std::string> environment;

	CleanKubectl()
	{
		std::string real = findKubectl();
		REQUIRE_MESSAGE(!real.empty(), "kubectl is not installed: plugin discovery cannot be tested. Install "
					       "Debian's kubernetes-client (scripts/install-deps.sh does).");
		fs::create_directories(dir.path / "bin");
		fs::create_directories(dir.path / "home");
		kubectl = (dir.path / "bin" / "kubectl").string();
		fs::create_symlink(real, kubectl);
		environment = {"PATH=" + pluginDir + ":" + (dir.path / "bin").string(), "HOME=" + (dir.path / "home").string(),
			       "LANG=C"};
	}

	Run run(std::vector<std::string> args, const std::vector<std::string> &extraEnvironment = {}) const
	{
		args.insert(args.begin(), kubectl);
		std::vector<std::string> env = environment;
		env.insert(env.end(), extraEnvironment.begin(), extraEnvironment.end());
		return test::runProcess(args, env);
	}
};

} // namespace

TEST_CASE("kubectl plugin list finds kubectl-ferry on PATH")
{
	CleanKubectl k;
	Run list = k.run({"plugin", "list"});
	CHECK_MESSAGE(list.exitCode == 0, list.err);
	CHECK_MESSAGE(contains(list.out, k.pluginDir + "/kubectl-ferry\n"), list.out << list.err);
	// kubectl warns about a plugin that is not executable or that
	// overshadows one of its own commands; ferry's name must do neither.
	CHECK_FALSE(contains(list.err, "kubectl-ferry"));
	CHECK_FALSE(contains(list.out, "warning"));
}

TEST_CASE("kubectl ferry version and --help run the plugin through kubectl")
{
	CleanKubectl k;
	Run version = k.run({"ferry", "version"});
	CHECK_MESSAGE(version.exitCode == 0, version.err);
	CHECK(version.out == std::string("kubectl-ferry ") + FERRY_VERSION_FOR_TEST + "\n");

	Run help = k.run({"ferry", "migrate", "--help"});
	CHECK_MESSAGE(help.exitCode == 0, help.err);
	CHECK(help.out.rfind("Usage: kubectl ferry migrate POD", 0) == 0);

	// The plugin's exit code comes back through kubectl.
	Run usage = k.run({"ferry", "migrate"});
	CHECK(usage.exitCode == 2);
	CHECK(contains(usage.err, "kubectl ferry: "));
}

TEST_CASE("kubectl hands the plugin its flags (-n, --context, -o) and environment ($KUBECTL) unchanged")
{
	CleanKubectl k;
	test::TempDir dir;
	test::FakeKubectl fake(dir, fixture("pod-web-0.json"), fixture("agents.json"));
	Run run = k.run({"ferry", "migrate", "web-0", "-n", "shop", "--context", "prod", "-c", "app", "--to-node",
			 "worker-6", "--dry-run", "-o", "json"},
			{"KUBECTL=" + fake.binary});
	CHECK_MESSAGE(run.exitCode == 0, run.err);
	CHECK(contains(run.out, "\"destinationAgent\":{\"node\":\"worker-6\""));
	auto calls = fake.calls();
	REQUIRE(calls.size() == 2);
	CHECK(calls[0] == std::vector<std::string>{"--context=prod", "get", "pod", "web-0", "--namespace=shop", "--output=json"});
}

TEST_CASE("the plugin runs the real kubectl from PATH: its errors come back quoted, with the right exit code")
{
	// No cluster and no kubeconfig here: kubectl's own refusals are what
	// can be observed, and they are exactly what a user with a wrong
	// context or no reachable API server sees.
	CleanKubectl k;
	Run context = k.run({"ferry", "migrate", "web-0", "--to-node", "worker-2", "--dry-run", "--context", "nope"});
	CHECK(context.exitCode == 2);
	CHECK_MESSAGE(contains(context.err, "kubectl ferry migrate: cannot resolve pod web-0: kubectl exited with 1: "),
		      context.err);
	CHECK(contains(context.err, "nope"));
	CHECK(contains(context.err, "[command=kubectl --context=nope get pod web-0 --output=json]"));

	test::TempDir dir;
	Run kubeconfig = k.run({"ferry", "migrate", "web-0", "--to-node", "worker-2", "--dry-run", "--kubeconfig",
				(dir.path / "missing").string()});
	CHECK(kubeconfig.exitCode == 2);
	CHECK_MESSAGE(contains(kubeconfig.err, (dir.path / "missing").string()), kubeconfig.err);
}

TEST_CASE("an API server that does not answer is exit 3, with kubectl's words")
{
	CleanKubectl k;
	test::TempDir dir;
	// Port 1 on loopback: nothing listens there, the connection is refused at once.
	std::string kubeconfig = dir.file("config", "apiVersion: v1\n"
						    "kind: Config\n"
						    "clusters:\n"
						    "- name: none\n"
						    "  cluster:\n"
						    "    server: https://127.0.0.1:1\n"
						    "contexts:\n"
						    "- name: none\n"
						    "  context:\n"
						    "    cluster: none\n"
						    "    user: nobody\n"
						    "current-context: none\n"
						    "users:\n"
						    "- name: nobody\n"
						    "  user:\n"
						    "    token: not-a-real-token\n");
	Run run = k.run({"ferry", "migrate", "web-0", "--to-node", "worker-2", "--dry-run", "--kubeconfig", kubeconfig});
	CHECK_MESSAGE(run.exitCode == 3, run.err);
	CHECK(contains(run.err, "127.0.0.1:1"));
	CHECK(contains(run.err, "can kubectl reach the cluster?"));
}
