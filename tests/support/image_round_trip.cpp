#include "image_round_trip.h"

namespace ferry::test {

// Until transport/ lands this only copies; it is replaced by a real
// encode/decode before any round-trip test is called done.
std::vector<repair::ConnectionSnapshot> throughImage(const std::vector<repair::ConnectionSnapshot> &snapshots)
{
	return snapshots;
}

} // namespace ferry::test
