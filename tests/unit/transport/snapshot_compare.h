// Field-by-field comparison of snapshots for doctest, so that a failure
// names the field that did not survive the image.
#pragma once

#include <doctest/doctest.h>

#include <string>

#include "repair/connection_snapshot.h"

namespace ferry::transport::samples {

// Sizes of the model this codec was written against (x86-64).
constexpr size_t kSnapshotSize = 312;
constexpr size_t kUserOptionsSize = 112;

inline void checkSameEndpoint(const Endpoint &a, const Endpoint &b)
{
	CHECK(a.family == b.family);
	CHECK(a.address == b.address);
	CHECK(a.port == b.port);
	CHECK(a.scopeId == b.scopeId);
}

inline void checkSame(const repair::ConnectionSnapshot &a, const repair::ConnectionSnapshot &b)
{
	// A field added to the model must be added to the codec, the docs and
	// this comparison; the sizes are the reminder.
	constexpr const char *kReminder =
		"the snapshot model changed: update transport/image_manifest.cpp, docs/image-format.md and checkSame";
	CHECK_MESSAGE(sizeof(repair::ConnectionSnapshot) == kSnapshotSize, kReminder);
	CHECK_MESSAGE(sizeof(repair::UserOptions) == kUserOptionsSize, kReminder);
	INFO("flow " << b.flow.toString());
	CHECK(a.family == b.family);
	checkSameEndpoint(a.flow.local, b.flow.local);
	checkSameEndpoint(a.flow.remote, b.flow.remote);
	CHECK(std::string(repair::toString(a.state)) == repair::toString(b.state));
	CHECK(a.bound == b.bound);
	CHECK(a.backlog == b.backlog);
	CHECK(a.sendSeq == b.sendSeq);
	CHECK(a.receiveSeq == b.receiveSeq);
	CHECK(a.receiveQueue == b.receiveQueue);
	CHECK(a.sendUnacked == b.sendUnacked);
	CHECK(a.sendUnsent == b.sendUnsent);
	CHECK(a.negotiated == b.negotiated);
	CHECK(a.timestamp == b.timestamp);
	CHECK(a.window == b.window);
	CHECK(a.socketError == b.socketError);
	CHECK(a.options == b.options);
}

} // namespace ferry::transport::samples
