#include "live/live_window.hpp"

#include <algorithm>
#include <iterator>

namespace openace::live {

void SeqRanges::insert(std::uint64_t first, std::uint64_t last)
{
    if (first > last)
        return;
    // Merge with every range that overlaps or touches [first, last].
    auto it = ranges_.upper_bound(first);
    if (it != ranges_.begin()) {
        auto prev = std::prev(it);
        if (prev->second != UINT64_MAX && prev->second + 1 >= first)
            it = prev;
        else if (prev->second == UINT64_MAX)
            it = prev;
    }
    while (it != ranges_.end() && (last == UINT64_MAX || it->first <= last + 1)) {
        first = std::min(first, it->first);
        last = std::max(last, it->second);
        it = ranges_.erase(it);
    }
    ranges_.emplace(first, last);
    while (ranges_.size() > max_ranges_)
        ranges_.erase(ranges_.begin());
}

bool SeqRanges::contains(std::uint64_t seq) const
{
    auto it = ranges_.upper_bound(seq);
    if (it == ranges_.begin())
        return false;
    return std::prev(it)->second >= seq;
}

void SeqRanges::erase_below(std::uint64_t floor)
{
    while (!ranges_.empty()) {
        auto it = ranges_.begin();
        if (it->first >= floor)
            return;
        std::uint64_t last = it->second;
        ranges_.erase(it);
        if (last >= floor) {
            ranges_.emplace(floor, last);
            return;
        }
    }
}

std::optional<std::uint64_t> SeqRanges::newest() const
{
    if (ranges_.empty())
        return std::nullopt;
    return ranges_.rbegin()->second;
}

std::vector<SeqRange> SeqRanges::ranges(std::size_t max) const
{
    std::vector<SeqRange> out;
    std::size_t skip = ranges_.size() > max ? ranges_.size() - max : 0;
    for (auto &[first, last] : ranges_) {
        if (skip) {
            --skip;
            continue;
        }
        out.emplace_back(first, last);
    }
    return out;
}

LiveWindow::LiveWindow(std::uint64_t max_pieces, std::size_t max_bytes)
    : max_pieces_(std::max<std::uint64_t>(1, max_pieces)), max_bytes_(max_bytes)
{
}

bool LiveWindow::add(std::shared_ptr<const LivePiece> p)
{
    if (!p || p->sequence < floor_ || pieces_.count(p->sequence))
        return false;
    const std::uint64_t seq = p->sequence;
    bytes_ += p->data.size();
    pieces_.emplace(seq, std::move(p));
    held_.insert(seq);
    const std::uint64_t newest = pieces_.rbegin()->first;
    if (newest >= max_pieces_ - 1)
        floor_ = std::max(floor_, newest - (max_pieces_ - 1));
    while (!pieces_.empty() && pieces_.begin()->first < floor_)
        drop(pieces_.begin());
    // Over the byte cap: drop the oldest, but never the newest piece.
    while (bytes_ > max_bytes_ && pieces_.size() > 1) {
        floor_ = pieces_.begin()->first + 1;
        drop(pieces_.begin());
    }
    held_.erase_below(floor_);
    return pieces_.count(seq) != 0;
}

void LiveWindow::drop(std::map<std::uint64_t, std::shared_ptr<const LivePiece>>::iterator it)
{
    bytes_ -= it->second->data.size();
    pieces_.erase(it);
}

std::shared_ptr<const LivePiece> LiveWindow::get(std::uint64_t seq) const
{
    auto it = pieces_.find(seq);
    return it == pieces_.end() ? nullptr : it->second;
}

std::optional<std::uint64_t> LiveWindow::newest() const
{
    if (pieces_.empty())
        return std::nullopt;
    return pieces_.rbegin()->first;
}

std::optional<std::uint64_t> LiveWindow::oldest() const
{
    if (pieces_.empty())
        return std::nullopt;
    return pieces_.begin()->first;
}

} // namespace openace::live
