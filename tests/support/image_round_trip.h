// Passes snapshots through the image stream: encode, compress, decode.
// Round-trip tests use it between snapshot() and restore() so that what is
// restored is what a destination would have received.
#pragma once

#include <vector>

#include "repair/connection_snapshot.h"

namespace ferry::test {

// Throws std::runtime_error (failing the test) if the stream rejects its
// own output.
std::vector<repair::ConnectionSnapshot> throughImage(const std::vector<repair::ConnectionSnapshot> &snapshots);

} // namespace ferry::test
