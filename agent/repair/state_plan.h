// How each TCP state is snapshotted and rebuilt (pure logic, no syscalls).
//
// A half-closed connection is an ESTABLISHED one plus one or two FINs. The
// kernel cannot be told "you are in LAST_ACK"; restore() rebuilds the state
// the way it was reached: our FIN with shutdown(SHUT_WR) in repair mode, the
// peer's FIN (or ACK, or RST) as a crafted segment from the peer's address.
// Each FIN occupies one sequence number, which is why the sequence numbers
// in a snapshot are adjusted by one where a FIN is part of them.
#pragma once

#include "connection_snapshot.h"

namespace ferry::repair {

struct StatePlan {
	bool migratable = false;
	const char *refusal = nullptr; // why not, when !migratable
	bool connected = false;        // has a peer and sequence numbers; uses repair mode
	bool peerFin = false;          // the peer's FIN is counted in receiveSeq
	bool ourFin = false;           // our FIN is counted in sendSeq
	bool ourFinAcked = false;      // ... and the peer acknowledged it
	bool ourFinFirst = false;      // our FIN was queued before the peer's FIN arrived
	bool reset = false;            // CLOSE because the peer reset the connection
	bool keepsSendQueue = true;    // false for CLOSE: nobody can ever send it
};

// `socketError` matters only for CLOSE with a peer: non-zero means reset.
StatePlan planFor(TcpState state, bool hasPeer, int socketError);

// The state restore() leaves the socket in (still in repair mode). It differs
// from the snapshot's state only when our FIN had not been sent yet: that FIN
// must follow the unsent data, so resume() queues it after that data.
TcpState stateAfterRestore(const StatePlan &plan, TcpState snapshotState, bool ourFinDeferred);

// Whether our FIN goes out in resume() rather than being restored as sent.
// A FIN is behind unsent data exactly when data is unsent.
bool ourFinDeferred(const StatePlan &plan, size_t unsentBytes);

} // namespace ferry::repair
