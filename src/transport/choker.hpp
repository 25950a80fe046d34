// Choking (BEP 3 "tit-for-tat"): who gets upload slots.  Pure logic; the
// Torrent runs it every 10 s and rotates the optimistic unchoke every 30 s.
#pragma once

#include <cstdint>
#include <vector>

namespace openace::transport {

struct ChokeCandidate {
    std::uint64_t key = 0;
    bool interested = false; // the peer wants our data
    // Leeching: its download rate to us (reciprocation).  Seeding: our
    // upload rate to it (serve those who take data fastest).
    double rate = 0;
    bool snubbed = false; // sent us nothing for a minute while we asked
};

// The peers to unchoke: the `slots` interested, unsnubbed peers with the
// highest rate (ties by key), plus `optimistic` when it is interested and
// not already chosen.  Deterministic.
std::vector<std::uint64_t> choose_unchoked(std::vector<ChokeCandidate> peers, int slots, std::uint64_t optimistic);

// The next optimistic unchoke: an interested peer that is not among
// `unchoked`, taken round-robin after `previous` (by key order); 0 if none.
std::uint64_t next_optimistic(const std::vector<ChokeCandidate> &peers, const std::vector<std::uint64_t> &unchoked,
                              std::uint64_t previous);

} // namespace openace::transport
