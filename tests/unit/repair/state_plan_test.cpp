#include <doctest/doctest.h>

#include <cerrno>
#include <string>

#include "repair/state_plan.h"

using namespace ferry::repair;

// doctest would find repair::toString() by ADL and fail to print a TcpState.
std::string stateName(ferry::repair::TcpState s)
{
	return ferry::repair::toString(s);
}

TEST_CASE("state names round-trip as the kernel spells them")
{
	for (int v = 1; v <= 11; ++v) {
		auto state = static_cast<TcpState>(v);
		auto back = tcpStateFromString(toString(state));
		REQUIRE(back.has_value());
		CHECK(stateName(*back) == stateName(state));
	}
	CHECK(std::string(toString(TcpState::FinWait1)) == "FIN_WAIT1");
	CHECK_FALSE(tcpStateFromString("ESTABLISHED ").has_value());
	CHECK(std::string(toString(static_cast<TcpState>(42))) == "UNKNOWN");
}

TEST_CASE("handshake and TIME_WAIT states are refused with a reason")
{
	for (TcpState s : {TcpState::SynSent, TcpState::SynRecv, TcpState::TimeWait}) {
		StatePlan p = planFor(s, true, 0);
		CHECK_FALSE(p.migratable);
		REQUIRE(p.refusal != nullptr);
		CHECK(std::string(p.refusal).size() > 10);
	}
	StatePlan unknown = planFor(static_cast<TcpState>(99), true, 0);
	CHECK_FALSE(unknown.migratable);
	CHECK(unknown.refusal != nullptr);
}

TEST_CASE("FINs are placed where each half-closed state has them")
{
	struct Row {
		TcpState state;
		bool peerFin, ourFin, acked, ourFirst;
	};
	const Row rows[] = {
		{TcpState::Established, false, false, false, false},
		{TcpState::FinWait1, false, true, false, true},
		{TcpState::FinWait2, false, true, true, true},
		{TcpState::CloseWait, true, false, false, false},
		{TcpState::LastAck, true, true, false, false},
		{TcpState::Closing, true, true, false, true},
	};
	for (const Row &r : rows) {
		CAPTURE(toString(r.state));
		StatePlan p = planFor(r.state, true, 0);
		CHECK(p.migratable);
		CHECK(p.connected);
		CHECK(p.peerFin == r.peerFin);
		CHECK(p.ourFin == r.ourFin);
		CHECK(p.ourFinAcked == r.acked);
		CHECK(p.ourFinFirst == r.ourFirst);
		CHECK_FALSE(p.reset);
		CHECK(p.keepsSendQueue);
	}
}

TEST_CASE("CLOSE is told apart by peer and pending error")
{
	StatePlan bound = planFor(TcpState::Close, false, 0);
	CHECK(bound.migratable);
	CHECK_FALSE(bound.connected);

	StatePlan closed = planFor(TcpState::Close, true, 0);
	CHECK(closed.connected);
	CHECK_FALSE(closed.reset);
	CHECK(closed.peerFin);
	CHECK(closed.ourFinAcked);
	CHECK_FALSE(closed.keepsSendQueue);

	StatePlan reset = planFor(TcpState::Close, true, ECONNRESET);
	CHECK(reset.reset);
	CHECK_FALSE(reset.peerFin);
	CHECK_FALSE(reset.ourFin);

	// The kernel records EPIPE for a RST that arrives after the peer's FIN.
	StatePlan resetAfterFin = planFor(TcpState::Close, true, EPIPE);
	CHECK(resetAfterFin.reset);
	CHECK(resetAfterFin.peerFin);

	CHECK(planFor(TcpState::Listen, false, 0).migratable);
	CHECK_FALSE(planFor(TcpState::Listen, false, 0).connected);
}

TEST_CASE("an unsent FIN is deferred behind unsent data")
{
	StatePlan fw1 = planFor(TcpState::FinWait1, true, 0);
	CHECK(ourFinDeferred(fw1, 10));
	CHECK_FALSE(ourFinDeferred(fw1, 0));
	CHECK(stateName(stateAfterRestore(fw1, TcpState::FinWait1, true)) == stateName(TcpState::Established));
	CHECK(stateName(stateAfterRestore(fw1, TcpState::FinWait1, false)) == stateName(TcpState::FinWait1));

	StatePlan closing = planFor(TcpState::Closing, true, 0);
	CHECK(stateName(stateAfterRestore(closing, TcpState::Closing, true)) == stateName(TcpState::CloseWait));
	StatePlan lastAck = planFor(TcpState::LastAck, true, 0);
	CHECK(stateName(stateAfterRestore(lastAck, TcpState::LastAck, true)) == stateName(TcpState::CloseWait));

	StatePlan fw2 = planFor(TcpState::FinWait2, true, 0);
	CHECK_FALSE(ourFinDeferred(fw2, 10)); // acked: nothing can be behind it
	StatePlan est = planFor(TcpState::Established, true, 0);
	CHECK_FALSE(ourFinDeferred(est, 10));
}
