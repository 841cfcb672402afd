// What both demo programs do at start-up: parse sizes from the command
// line, lift the fd limit, and turn the signals they handle into an fd for
// their event loop.
#pragma once

#include <cstdint>
#include <string_view>

#include "base/error.h"
#include "base/unique_fd.h"

namespace ferry::demo {

// "0", "4096", "200k", "200K", "1m", "1M" (k = 1024, m = 1024 * 1024).
Result<uint64_t> parseByteCount(std::string_view text);

// Raises the soft RLIMIT_NOFILE to the hard limit: a benchmark holds tens of
// thousands of idle connections.
void raiseFdLimit();

// Blocks SIGTERM, SIGINT and SIGUSR1 and returns a non-blocking signalfd
// that reports them; ignores SIGPIPE (writes use MSG_NOSIGNAL anyway, this
// covers the rest). The mask is inherited by children: the demo programs
// start none.
Result<UniqueFd> openSignalFd();

} // namespace ferry::demo
