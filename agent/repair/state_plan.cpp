#include "state_plan.h"

#include <cerrno>

namespace ferry::repair {

StatePlan planFor(TcpState state, bool hasPeer, int socketError)
{
	StatePlan p;
	switch (state) {
	case TcpState::Established:
		p.migratable = p.connected = true;
		break;
	case TcpState::FinWait1:
		p.migratable = p.connected = true;
		p.ourFin = p.ourFinFirst = true;
		break;
	case TcpState::FinWait2:
		p.migratable = p.connected = true;
		p.ourFin = p.ourFinAcked = p.ourFinFirst = true;
		break;
	case TcpState::CloseWait:
		p.migratable = p.connected = true;
		p.peerFin = true;
		break;
	case TcpState::LastAck:
		p.migratable = p.connected = true;
		p.peerFin = p.ourFin = true;
		break;
	case TcpState::Closing:
		p.migratable = p.connected = true;
		p.peerFin = p.ourFin = p.ourFinFirst = true;
		break;
	case TcpState::Close:
		p.migratable = true;
		if (!hasPeer)
			break; // never connected: bound-only or fresh
		p.connected = true;
		p.keepsSendQueue = false;
		if (socketError != 0) {
			// A RST ends the connection in any state; the reader must
			// see the unread bytes and then the error. EPIPE is what the
			// kernel records for a RST in CLOSE_WAIT, i.e. after a FIN.
			p.reset = true;
			p.peerFin = socketError == EPIPE;
		} else {
			// Both FINs exchanged and acknowledged (LAST_ACK -> CLOSE, or
			// FIN_WAIT2 -> TIME_WAIT, which leaves the owner's socket CLOSE).
			p.peerFin = p.ourFin = p.ourFinAcked = true;
		}
		break;
	case TcpState::Listen:
		p.migratable = true;
		break;
	case TcpState::SynSent:
		p.refusal = "the handshake is not complete (SYN_SENT); retry after it finishes";
		break;
	case TcpState::SynRecv:
		p.refusal = "the handshake is not complete (SYN_RECV); retry after it finishes";
		break;
	case TcpState::TimeWait:
		p.refusal = "TIME_WAIT has no owner to hand the socket to";
		break;
	}
	if (!p.migratable && !p.refusal)
		p.refusal = "unknown TCP state";
	return p;
}

bool ourFinDeferred(const StatePlan &plan, size_t unsentBytes)
{
	return plan.ourFin && !plan.ourFinAcked && unsentBytes > 0;
}

TcpState stateAfterRestore(const StatePlan &plan, TcpState snapshotState, bool deferred)
{
	if (!deferred)
		return snapshotState;
	// Our FIN is not there yet: what is left is the peer's side only.
	return plan.peerFin ? TcpState::CloseWait : TcpState::Established;
}

} // namespace ferry::repair
