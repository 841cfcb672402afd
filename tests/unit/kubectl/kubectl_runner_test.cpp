// KubectlRunner: the argv it builds, what it returns for a kubectl that
// succeeds, fails, hangs or does not exist, and how kubectl's stderr is
// classified. The "kubectl" here is a small script, because what is tested
// is the runner's process handling, not kubectl.
#include "kubectl_runner.h"
#include "kubectl_test_support.h"

using namespace ferry;
using namespace ferry::kubectl;
using ferry::test::contains;

TEST_CASE("argv: the binary, --kubeconfig, --context, then the arguments")
{
	KubectlRunner plain("kubectl", {});
	CHECK(plain.argv({"get", "pod", "x"}) == std::vector<std::string>{"kubectl", "get", "pod", "x"});
	KubectlRunner both("/opt/k/kubectl", {"/tmp/kc", "-odd-context"});
	// A value that starts with '-' stays a value in the --flag=value form.
	CHECK(both.argv({"get"}) ==
	      std::vector<std::string>{"/opt/k/kubectl", "--kubeconfig=/tmp/kc", "--context=-odd-context", "get"});
	KubectlRunner contextOnly("kubectl", {"", "kind-ferry"});
	CHECK(contextOnly.argv({}) == std::vector<std::string>{"kubectl", "--context=kind-ferry"});
}

TEST_CASE("kubectlBinary: $KUBECTL when set and non-empty, else kubectl")
{
	CHECK(kubectlBinary(nullptr) == "kubectl");
	CHECK(kubectlBinary("") == "kubectl");
	CHECK(kubectlBinary("/usr/local/bin/kubectl-1.31") == "/usr/local/bin/kubectl-1.31");
}

TEST_CASE("run returns stdout of a kubectl that exits 0; arguments reach it unchanged, without a shell")
{
	test::TempDir dir;
	std::string script = dir.file("kubectl", "#!/bin/sh\nfor a in \"$@\"; do printf '[%s]' \"$a\"; done\necho\n"
						 "echo 'warnings go to stderr' >&2\n",
				      true);
	KubectlRunner runner(script, {"", "ctx"});
	auto out = runner.run({"get", "pod", "a b", "$HOME", "'q'", "*"});
	REQUIRE_MESSAGE(out.ok(), out.error().message());
	CHECK(*out == "[--context=ctx][get][pod][a b][$HOME]['q'][*]\n");
}

TEST_CASE("run: a failing kubectl's stderr is quoted and classified")
{
	test::TempDir dir;
	std::string script = dir.file("kubectl",
				      "#!/bin/sh\necho 'partial' \necho '  Error from server (Forbidden): pods \"web-0\" is "
				      "forbidden: User \"dev\" cannot get resource \"pods\"  ' >&2\necho >&2\nexit 1\n",
				      true);
	KubectlRunner runner(script, {});
	auto out = runner.run({"get", "pod", "web-0"});
	REQUIRE_FALSE(out.ok());
	CHECK(out.error().code == EACCES);
	CHECK(out.error().what ==
	      "kubectl exited with 1: Error from server (Forbidden): pods \"web-0\" is forbidden: User \"dev\" cannot get "
	      "resource \"pods\"");
	// The command as the user could retype it: "kubectl", not the script.
	CHECK(out.error().context == "command=kubectl get pod web-0");
}

TEST_CASE("run: a long stderr is cut, several lines are joined")
{
	test::TempDir dir;
	std::string script = dir.file("kubectl",
				      "#!/bin/sh\necho 'first line' >&2\necho 'second line' >&2\n"
				      "i=0; while [ $i -lt 500 ]; do printf 'xxxxxxxxxx' >&2; i=$((i+1)); done\nexit 2\n",
				      true);
	auto out = KubectlRunner(script, {}).run({"get"});
	REQUIRE_FALSE(out.ok());
	CHECK(out.error().what.rfind("kubectl exited with 2: first line; second line; xxxx", 0) == 0);
	CHECK(out.error().what.size() < kMaxQuotedStderr + 64);
	CHECK(out.error().what.substr(out.error().what.size() - 3) == "...");
}

TEST_CASE("run: a kubectl that hangs is killed at the time limit")
{
	test::TempDir dir;
	std::string script = dir.file("kubectl", "#!/bin/sh\nexec sleep 30\n", true);
	auto started = std::chrono::steady_clock::now();
	auto out = KubectlRunner(script, {}, std::chrono::milliseconds(300)).run({"get"});
	auto took = std::chrono::steady_clock::now() - started;
	REQUIRE_FALSE(out.ok());
	CHECK(out.error().code == ETIMEDOUT);
	CHECK(contains(out.error().what, "kubectl did not finish within"));
	CHECK(took < std::chrono::seconds(10));
}

TEST_CASE("run: a kubectl that does not exist says so")
{
	test::TempDir dir;
	auto out = KubectlRunner((dir.path / "no-kubectl").string(), {}).run({"get"});
	REQUIRE_FALSE(out.ok());
	CHECK(contains(out.error().what, "cannot run '" + (dir.path / "no-kubectl").string() + "'"));
	CHECK(contains(out.error().what, "$KUBECTL"));
	// Not ENOENT: that would read as "the pod does not exist" (exit 5).
	CHECK(out.error().code == 0);
}

TEST_CASE("classifyKubectlError: kubectl's messages, as kubectl prints them")
{
	CHECK(classifyKubectlError("Error from server (NotFound): pods \"web-0\" not found\n") == ENOENT);
	CHECK(classifyKubectlError("Error from server (NotFound): namespaces \"shpo\" not found\n") == ENOENT);
	CHECK(classifyKubectlError("Error from server (Forbidden): pods is forbidden: User \"x\" cannot list") == EACCES);
	CHECK(classifyKubectlError("error: You must be logged in to the server (Unauthorized)") == EACCES);
	CHECK(classifyKubectlError("The connection to the server localhost:8080 was refused - did you specify the right "
				   "host or port?") == ECONNREFUSED);
	CHECK(classifyKubectlError("Unable to connect to the server: dial tcp 10.0.0.1:6443: i/o timeout") == ECONNREFUSED);
	CHECK(classifyKubectlError("error: context \"prod\" does not exist") == EINVAL);
	CHECK(classifyKubectlError("Error in configuration: context was not found for specified context: prod") == EINVAL);
	CHECK(classifyKubectlError("error: unknown flag: --bogus") == EINVAL);
	CHECK(classifyKubectlError("error: stat /nope/config: no such file or directory") == EINVAL);
	CHECK(classifyKubectlError("Error from server (InternalError): etcd leader changed") == 0);
	CHECK(classifyKubectlError("") == 0);
}
