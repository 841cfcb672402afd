#include "connection_snapshot.h"

namespace ferry::repair {

namespace {

struct StateName {
	TcpState state;
	const char *name;
};

constexpr StateName kStateNames[] = {
	{TcpState::Established, "ESTABLISHED"},
	{TcpState::SynSent, "SYN_SENT"},
	{TcpState::SynRecv, "SYN_RECV"},
	{TcpState::FinWait1, "FIN_WAIT1"},
	{TcpState::FinWait2, "FIN_WAIT2"},
	{TcpState::TimeWait, "TIME_WAIT"},
	{TcpState::Close, "CLOSE"},
	{TcpState::CloseWait, "CLOSE_WAIT"},
	{TcpState::LastAck, "LAST_ACK"},
	{TcpState::Listen, "LISTEN"},
	{TcpState::Closing, "CLOSING"},
};

} // namespace

const char *toString(TcpState state)
{
	for (const StateName &s : kStateNames)
		if (s.state == state)
			return s.name;
	return "UNKNOWN";
}

std::optional<TcpState> tcpStateFromString(std::string_view name)
{
	for (const StateName &s : kStateNames)
		if (name == s.name)
			return s.state;
	return std::nullopt;
}

} // namespace ferry::repair
