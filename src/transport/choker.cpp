#include "transport/choker.hpp"

#include <algorithm>

namespace openace::transport {

std::vector<std::uint64_t> choose_unchoked(std::vector<ChokeCandidate> peers, int slots, std::uint64_t optimistic)
{
    std::erase_if(peers, [](const ChokeCandidate &c) { return !c.interested || c.snubbed; });
    std::sort(peers.begin(), peers.end(), [](const ChokeCandidate &a, const ChokeCandidate &b) {
        return a.rate != b.rate ? a.rate > b.rate : a.key < b.key;
    });
    std::vector<std::uint64_t> out;
    for (const auto &c : peers) {
        if (static_cast<int>(out.size()) >= slots)
            break;
        out.push_back(c.key);
    }
    bool opt_interested = std::any_of(peers.begin(), peers.end(), [&](const ChokeCandidate &c) { return c.key == optimistic; });
    if (optimistic != 0 && opt_interested && std::find(out.begin(), out.end(), optimistic) == out.end())
        out.push_back(optimistic);
    return out;
}

std::uint64_t next_optimistic(const std::vector<ChokeCandidate> &peers, const std::vector<std::uint64_t> &unchoked,
                              std::uint64_t previous)
{
    std::vector<std::uint64_t> keys;
    for (const auto &c : peers)
        if (c.interested && std::find(unchoked.begin(), unchoked.end(), c.key) == unchoked.end())
            keys.push_back(c.key);
    if (keys.empty())
        return 0;
    std::sort(keys.begin(), keys.end());
    auto it = std::upper_bound(keys.begin(), keys.end(), previous);
    return it == keys.end() ? keys.front() : *it;
}

} // namespace openace::transport
