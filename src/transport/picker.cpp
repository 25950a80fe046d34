#include "transport/picker.hpp"

#include <openace/engine.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>

namespace openace::transport {

namespace {

[[noreturn]] void invalid(const char *op, const std::string &detail)
{
    throw Error(Errc::INVAL, "picker", op, detail);
}

// splitmix64: a cheap, well-mixed hash for the per-Picker tie order.
std::uint64_t mix(std::uint64_t x) noexcept
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

} // namespace

// Everything one pick() call needs, so the steps stay small.
struct Picker::PickCtx {
    PeerKey key;
    Peer &peer;
    std::size_t max;
    clock::time_point now;
    std::chrono::milliseconds late_after;
    std::vector<Block> &out;
    bool full() const noexcept { return out.size() >= max; }
};

Picker::Picker(std::uint32_t num_pieces, std::int64_t piece_length, std::int64_t total_length,
               std::uint32_t block_size, std::uint64_t seed)
    : num_pieces_(num_pieces), piece_length_(piece_length), total_length_(total_length),
      block_size_(block_size), seed_(seed)
{
    if (piece_length <= 0 || total_length <= 0 || block_size == 0)
        invalid("create", "piece_length " + std::to_string(piece_length) + ", total_length " +
                              std::to_string(total_length) + ", block_size " + std::to_string(block_size) +
                              ": must be > 0");
    if (num_pieces != (total_length + piece_length - 1) / piece_length || num_pieces == kNone)
        invalid("create", "num_pieces " + std::to_string(num_pieces) + " does not match total_length " +
                              std::to_string(total_length) + " / piece_length " + std::to_string(piece_length));
    if ((piece_length + block_size - 1) / block_size > 0xffffffffll)
        invalid("create", "piece_length " + std::to_string(piece_length) + ": too many blocks");
    have_.resize(num_pieces);
    critical_bits_.resize(num_pieces);
    avail_.assign(num_pieces, 0);
    slot_.assign(num_pieces, kNone);
    wanted_end_ = num_pieces;
    rebuild_order();
    recount();
}

void Picker::check_piece(std::uint32_t piece, const char *op) const
{
    if (piece >= num_pieces_)
        invalid(op, "piece " + std::to_string(piece) + " out of range (torrent has " +
                        std::to_string(num_pieces_) + ")");
}

std::int64_t Picker::size_of(std::uint32_t piece) const noexcept
{
    return piece + 1 == num_pieces_ ? total_length_ - piece_length_ * piece : piece_length_;
}

std::uint32_t Picker::blocks_of(std::uint32_t piece) const noexcept
{
    return static_cast<std::uint32_t>((size_of(piece) + block_size_ - 1) / block_size_);
}

std::int64_t Picker::piece_size(std::uint32_t piece) const
{
    check_piece(piece, "piece_size");
    return size_of(piece);
}

std::uint32_t Picker::blocks_in_piece(std::uint32_t piece) const
{
    check_piece(piece, "blocks_in_piece");
    return blocks_of(piece);
}

Picker::Block Picker::block_at(std::uint32_t piece, std::uint32_t index) const noexcept
{
    const std::int64_t begin = static_cast<std::int64_t>(index) * block_size_;
    const std::int64_t left = size_of(piece) - begin;
    return Block{piece, static_cast<std::uint32_t>(begin),
                 static_cast<std::uint32_t>(std::min<std::int64_t>(block_size_, left))};
}

bool Picker::locate(const Block &b, std::uint32_t *index) const noexcept
{
    if (b.piece >= num_pieces_ || b.begin % block_size_ != 0)
        return false;
    const std::uint32_t i = b.begin / block_size_;
    if (i >= blocks_of(b.piece) || block_at(b.piece, i) != b)
        return false;
    *index = i;
    return true;
}

std::uint32_t Picker::candidate_unrequested(std::uint32_t piece) const noexcept
{
    return slot_[piece] != kNone ? partials_[slot_[piece]].unrequested : blocks_of(piece);
}

// --- availability order ----------------------------------------------------

void Picker::rebuild_order()
{
    auto bucket = [this](std::uint32_t p) { return candidate(p) ? avail_[p] + 1 : 0u; };
    order_.resize(num_pieces_);
    std::iota(order_.begin(), order_.end(), 0u);
    std::sort(order_.begin(), order_.end(), [&](std::uint32_t a, std::uint32_t b) {
        const std::uint32_t ba = bucket(a), bb = bucket(b);
        return ba != bb ? ba < bb : mix(seed_ ^ a) < mix(seed_ ^ b);
    });
    pos_.resize(num_pieces_);
    std::uint32_t top = 2; // buckets 0, 1 and 2 always exist
    for (std::uint32_t i = 0; i < num_pieces_; ++i) {
        pos_[order_[i]] = i;
        top = std::max(top, bucket(order_[i]));
    }
    bucket_begin_.assign(top + 2, num_pieces_);
    for (std::uint32_t i = num_pieces_; i-- > 0;)
        bucket_begin_[bucket(order_[i])] = i;
    for (std::uint32_t b = top + 1; b-- > 0;) // empty buckets start where the next one does
        bucket_begin_[b] = std::min(bucket_begin_[b], bucket_begin_[b + 1]);
}

void Picker::recount()
{
    missing_ = 0;
    unrequested_ = 0;
    for (std::uint32_t p = wanted_first_; p < wanted_end_; ++p)
        if (!have_.test(p)) {
            ++missing_;
            unrequested_ += candidate_unrequested(p);
        }
}

void Picker::swap_order(std::uint32_t i, std::uint32_t j) noexcept
{
    std::swap(order_[i], order_[j]);
    pos_[order_[i]] = i;
    pos_[order_[j]] = j;
}

// The piece (in bucket `from`) becomes the first of bucket from + 1.
void Picker::bucket_up(std::uint32_t piece, std::uint32_t from)
{
    if (from + 2 >= bucket_begin_.size())
        bucket_begin_.push_back(num_pieces_);
    const std::uint32_t last = --bucket_begin_[from + 1];
    swap_order(pos_[piece], last);
}

// The piece (in bucket `from`) becomes the last of bucket from - 1.
void Picker::bucket_down(std::uint32_t piece, std::uint32_t from)
{
    const std::uint32_t first = bucket_begin_[from]++;
    swap_order(pos_[piece], first);
}

void Picker::avail_inc(std::uint32_t piece)
{
    if (candidate(piece))
        bucket_up(piece, avail_[piece] + 1);
    ++avail_[piece];
}

void Picker::avail_dec(std::uint32_t piece)
{
    if (candidate(piece))
        bucket_down(piece, avail_[piece] + 1);
    --avail_[piece];
}

// Flips our have bit of a wanted or unwanted piece, keeping buckets and
// counters right.
void Picker::set_candidate(std::uint32_t piece, bool have)
{
    if (have_.test(piece) == have)
        return;
    if (!is_wanted(piece)) {
        have_.assign(piece, have);
        return;
    }
    if (have) {
        unrequested_ -= candidate_unrequested(piece);
        --missing_;
        for (std::uint32_t b = avail_[piece] + 1; b > 0; --b)
            bucket_down(piece, b);
        have_.set(piece);
    } else {
        have_.reset(piece);
        for (std::uint32_t b = 0; b <= avail_[piece]; ++b)
            bucket_up(piece, b);
        unrequested_ += candidate_unrequested(piece);
        ++missing_;
    }
}

// --- peers -----------------------------------------------------------------

void Picker::forget_availability(const Peer &p)
{
    if (p.seed) {
        --seeds_;
        return;
    }
    for (std::uint32_t i = 0; i < num_pieces_; ++i)
        if (p.have.test(i))
            avail_dec(i);
}

void Picker::add_peer(PeerKey peer, const Bitfield &have)
{
    if (have.size() != num_pieces_)
        invalid("add_peer", "bitfield of " + std::to_string(have.size()) + " pieces, torrent has " +
                                std::to_string(num_pieces_));
    if (have.all()) {
        add_peer_have_all(peer);
        return;
    }
    Peer &p = peers_[peer];
    forget_availability(p);
    p.seed = false;
    p.have = have;
    for (std::uint32_t i = 0; i < num_pieces_; ++i)
        if (have.test(i))
            avail_inc(i);
}

void Picker::add_peer_have_all(PeerKey peer)
{
    auto [it, added] = peers_.try_emplace(peer);
    if (!added) {
        if (it->second.seed)
            return;
        forget_availability(it->second);
    }
    it->second.seed = true;
    it->second.have = Bitfield();
    ++seeds_;
}

void Picker::peer_have(PeerKey peer, std::uint32_t piece)
{
    check_piece(piece, "peer_have");
    auto [it, added] = peers_.try_emplace(peer);
    Peer &p = it->second;
    if (added)
        p.have.resize(num_pieces_);
    if (p.has(piece))
        return;
    p.have.set(piece);
    avail_inc(piece);
}

void Picker::remove_peer(PeerKey peer)
{
    auto it = peers_.find(peer);
    if (it == peers_.end())
        return;
    peer_choked(peer);
    forget_availability(it->second);
    peers_.erase(it);
}

std::uint32_t Picker::availability(std::uint32_t piece) const
{
    check_piece(piece, "availability");
    return avail_[piece] + seeds_;
}

// --- our side ----------------------------------------------------------------

void Picker::set_have(std::uint32_t piece)
{
    check_piece(piece, "set_have");
    set_candidate(piece, true);
    if (slot_[piece] != kNone)
        release_partial(piece);
}

void Picker::clear_have(std::uint32_t piece)
{
    check_piece(piece, "clear_have");
    set_candidate(piece, false);
}

void Picker::piece_failed(std::uint32_t piece)
{
    check_piece(piece, "piece_failed");
    if (slot_[piece] != kNone)
        release_partial(piece);
}

void Picker::set_wanted(std::int64_t begin, std::int64_t end)
{
    if (begin < 0 || begin > end || end > total_length_)
        invalid("set_wanted", "range [" + std::to_string(begin) + ", " + std::to_string(end) +
                                  ") not within [0, " + std::to_string(total_length_) + ")");
    if (begin == end) {
        wanted_first_ = wanted_end_ = 0;
    } else {
        wanted_first_ = static_cast<std::uint32_t>(begin / piece_length_);
        wanted_end_ = static_cast<std::uint32_t>((end + piece_length_ - 1) / piece_length_);
    }
    rebuild_order();
    recount();
}

// --- readers ---------------------------------------------------------------

void Picker::set_reader(int reader, std::int64_t position, std::int64_t window_bytes,
                        double bytes_per_second, clock::time_point now)
{
    if (position < 0 || position > total_length_ || window_bytes < 0 ||
        !(bytes_per_second > 0) || !std::isfinite(bytes_per_second))
        invalid("set_reader", "reader " + std::to_string(reader) + ": position " + std::to_string(position) +
                                  ", window " + std::to_string(window_bytes) + " bytes, rate " +
                                  std::to_string(bytes_per_second) + " B/s (need 0 <= position <= " +
                                  std::to_string(total_length_) + ", window >= 0, rate > 0)");
    Reader r{position, window_bytes, bytes_per_second, now, 0, 0};
    const std::int64_t last = std::min(total_length_, position + std::min(window_bytes, total_length_));
    if (last > position) {
        r.first = static_cast<std::uint32_t>(position / piece_length_);
        r.end = static_cast<std::uint32_t>((last + piece_length_ - 1) / piece_length_);
    }
    readers_[reader] = r;
    rebuild_critical();
}

void Picker::remove_reader(int reader)
{
    if (readers_.erase(reader) != 0)
        rebuild_critical();
}

void Picker::rebuild_critical()
{
    for (const Critical &c : critical_)
        critical_bits_.reset(c.piece);
    std::vector<Critical> next;
    for (const auto &[id, r] : readers_)
        for (std::uint32_t p = r.first; p < r.end; ++p) {
            const std::int64_t ahead = std::max<std::int64_t>(0, piece_length_ * p - r.position);
            const auto distance = static_cast<double>(ahead);
            // Capped at ~30 years so that the conversion cannot overflow.
            const std::chrono::duration<double> wait(std::min(distance / r.rate, 1e9));
            next.push_back({r.set_at + std::chrono::duration_cast<clock::duration>(wait), p});
        }
    // A piece in several windows keeps its earliest deadline.
    std::sort(next.begin(), next.end(), [](const Critical &a, const Critical &b) {
        return a.piece != b.piece ? a.piece < b.piece : a.deadline < b.deadline;
    });
    next.erase(std::unique(next.begin(), next.end(),
                           [](const Critical &a, const Critical &b) { return a.piece == b.piece; }),
               next.end());
    std::sort(next.begin(), next.end(), [](const Critical &a, const Critical &b) {
        return a.deadline != b.deadline ? a.deadline < b.deadline : a.piece < b.piece;
    });
    for (const Critical &c : next)
        critical_bits_.set(c.piece);
    critical_ = std::move(next);
}

Picker::clock::time_point Picker::deadline(std::uint32_t piece) const
{
    if (!is_time_critical(piece))
        return clock::time_point::max();
    for (const Critical &c : critical_)
        if (c.piece == piece)
            return c.deadline;
    return clock::time_point::max();
}

// --- block state -------------------------------------------------------------

std::uint32_t Picker::new_partial(std::uint32_t piece)
{
    const std::uint32_t n = blocks_of(piece);
    Partial pp;
    pp.piece = piece;
    pp.unrequested = n;
    pp.blocks.resize(n);
    partials_.push_back(std::move(pp));
    return slot_[piece] = static_cast<std::uint32_t>(partials_.size() - 1);
}

// Forgets the piece's block state and every request for it.
void Picker::release_partial(std::uint32_t piece)
{
    const std::uint32_t slot = slot_[piece];
    Partial &pp = partials_[slot];
    for (std::uint32_t i = 0; i < pp.blocks.size(); ++i)
        for (const Request &r : pp.blocks[i].requests)
            erase_outstanding(peers_.at(r.peer), block_at(piece, i));
    if (candidate(piece))
        unrequested_ += pp.blocks.size() - pp.unrequested;
    if (slot + 1 != partials_.size()) {
        pp = std::move(partials_.back());
        slot_[pp.piece] = slot;
    }
    partials_.pop_back();
    slot_[piece] = kNone;
}

void Picker::add_request(std::uint32_t slot, std::uint32_t index, PickCtx &ctx)
{
    Partial &pp = partials_[slot];
    BlockState &bs = pp.blocks[index];
    if (bs.requests.empty()) {
        --pp.unrequested;
        if (candidate(pp.piece))
            --unrequested_;
    }
    bs.requests.push_back({ctx.key, ctx.now});
    const Block b = block_at(pp.piece, index);
    ctx.peer.outstanding.push_back(b);
    ctx.out.push_back(b);
}

void Picker::erase_outstanding(Peer &p, const Block &b)
{
    auto it = std::find(p.outstanding.begin(), p.outstanding.end(), b);
    if (it != p.outstanding.end())
        p.outstanding.erase(it);
}

// Drops the peer's request for b from the block state (not from the peer's
// outstanding list); a piece left with nothing requested or received is
// no longer in flight.
void Picker::unlink(PeerKey peer, const Block &b)
{
    const std::uint32_t slot = slot_[b.piece];
    if (slot == kNone)
        return;
    Partial &pp = partials_[slot];
    BlockState &bs = pp.blocks[b.begin / block_size_];
    auto it = std::find_if(bs.requests.begin(), bs.requests.end(),
                           [&](const Request &r) { return r.peer == peer; });
    if (it == bs.requests.end())
        return;
    bs.requests.erase(it);
    if (!bs.requests.empty() || bs.received)
        return;
    ++pp.unrequested;
    if (candidate(b.piece))
        ++unrequested_;
    if (pp.received == 0 && pp.unrequested == pp.blocks.size())
        release_partial(b.piece);
}

std::vector<Picker::PeerKey> Picker::block_received(PeerKey peer, const Block &b, bool *was_new)
{
    if (was_new)
        *was_new = false;
    std::uint32_t index = 0;
    if (!locate(b, &index) || have_.test(b.piece) || slot_[b.piece] == kNone)
        return {};
    Partial &pp = partials_[slot_[b.piece]];
    BlockState &bs = pp.blocks[index];
    if (bs.received || bs.requests.empty())
        return {};
    bs.received = true;
    ++pp.received;
    std::vector<PeerKey> cancel;
    for (const Request &r : bs.requests) {
        erase_outstanding(peers_.at(r.peer), b);
        if (r.peer != peer)
            cancel.push_back(r.peer);
    }
    bs.requests.clear();
    if (was_new)
        *was_new = true;
    return cancel;
}

bool Picker::piece_blocks_complete(std::uint32_t piece) const
{
    check_piece(piece, "piece_blocks_complete");
    const std::uint32_t slot = slot_[piece];
    return slot != kNone && !have_.test(piece) && partials_[slot].received == partials_[slot].blocks.size();
}

void Picker::request_dropped(PeerKey peer, const Block &b)
{
    std::uint32_t index = 0;
    auto it = peers_.find(peer);
    if (it == peers_.end() || !locate(b, &index))
        return;
    auto &out = it->second.outstanding;
    auto o = std::find(out.begin(), out.end(), b);
    if (o == out.end())
        return;
    out.erase(o);
    unlink(peer, b);
}

void Picker::peer_choked(PeerKey peer)
{
    auto it = peers_.find(peer);
    if (it == peers_.end())
        return;
    const std::vector<Block> dropped = std::move(it->second.outstanding);
    it->second.outstanding.clear();
    for (const Block &b : dropped)
        unlink(peer, b);
}

std::vector<Picker::Block> Picker::outstanding(PeerKey peer) const
{
    auto it = peers_.find(peer);
    return it == peers_.end() ? std::vector<Block>{} : it->second.outstanding;
}

std::size_t Picker::outstanding_count(PeerKey peer) const
{
    auto it = peers_.find(peer);
    return it == peers_.end() ? 0 : it->second.outstanding.size();
}

// --- pick --------------------------------------------------------------------

std::vector<Picker::Block> Picker::pick(PeerKey peer, int max_blocks, clock::time_point now,
                                        std::chrono::milliseconds late_after)
{
    std::vector<Block> out;
    auto it = peers_.find(peer);
    if (it == peers_.end() || max_blocks <= 0)
        return out;
    PickCtx ctx{peer, it->second, static_cast<std::size_t>(max_blocks), now, late_after, out};
    pick_critical(ctx);
    pick_partials(ctx, Take::fresh);
    pick_rarest(ctx);
    if (endgame())
        pick_partials(ctx, Take::duplicate);
    return out;
}

void Picker::take(std::uint32_t slot, PickCtx &ctx, Take mode)
{
    if (mode == Take::fresh && partials_[slot].unrequested == 0)
        return;
    const auto eligible = [&](const BlockState &bs) {
        if (bs.received)
            return false;
        if (mode == Take::fresh)
            return bs.requests.empty();
        clock::time_point latest = clock::time_point::min();
        for (const Request &r : bs.requests) {
            if (r.peer == ctx.key)
                return false; // never ask a peer twice for one block
            latest = std::max(latest, r.at);
        }
        return !bs.requests.empty() && (mode == Take::duplicate || ctx.now - latest > ctx.late_after);
    };
    const std::uint32_t n = static_cast<std::uint32_t>(partials_[slot].blocks.size());
    for (std::uint32_t i = 0; i < n && !ctx.full(); ++i)
        if (eligible(partials_[slot].blocks[i]))
            add_request(slot, i, ctx);
}

void Picker::pick_critical(PickCtx &ctx)
{
    for (const Critical &c : critical_) {
        if (ctx.full())
            return;
        if (!candidate(c.piece) || !ctx.peer.has(c.piece))
            continue;
        const std::uint32_t slot = slot_[c.piece] != kNone ? slot_[c.piece] : new_partial(c.piece);
        take(slot, ctx, Take::fresh);
        take(slot, ctx, Take::late);
    }
}

void Picker::pick_partials(PickCtx &ctx, Take mode)
{
    for (std::uint32_t slot = 0; slot < partials_.size() && !ctx.full(); ++slot) {
        const std::uint32_t piece = partials_[slot].piece;
        if (candidate(piece) && ctx.peer.has(piece))
            take(slot, ctx, mode);
    }
}

// Walks candidates from the rarest bucket a peer can serve: bucket 1 holds
// pieces only seeds have, so a non-seed starts at bucket 2.
void Picker::pick_rarest(PickCtx &ctx)
{
    for (std::uint32_t i = bucket_begin_[ctx.peer.seed ? 1 : 2]; i < num_pieces_ && !ctx.full(); ++i) {
        const std::uint32_t piece = order_[i];
        if (slot_[piece] == kNone && ctx.peer.has(piece))
            take(new_partial(piece), ctx, Take::fresh);
    }
}

// --- reporting -----------------------------------------------------------------

std::vector<Picker::PeerKey> Picker::by_queue_length(std::vector<std::pair<PeerKey, std::size_t>> peers)
{
    std::stable_sort(peers.begin(), peers.end(),
                     [](const auto &a, const auto &b) { return a.second < b.second; });
    std::vector<PeerKey> keys;
    keys.reserve(peers.size());
    for (const auto &p : peers)
        keys.push_back(p.first);
    return keys;
}

nlohmann::json Picker::status() const
{
    std::size_t requested = 0;
    for (const auto &[key, p] : peers_)
        requested += p.outstanding.size();
    nlohmann::json readers = nlohmann::json::array();
    for (const auto &[id, r] : readers_)
        readers.push_back({{"id", id},
                           {"position", r.position},
                           {"window_bytes", r.window},
                           {"bytes_per_second", r.rate},
                           {"first_piece", r.first},
                           {"end_piece", r.end}});
    return {{"pieces", num_pieces_},
            {"have", have_.count()},
            {"wanted", wanted_end_ - wanted_first_},
            {"missing", missing_},
            {"time_critical", critical_.size()},
            {"requested_blocks", requested},
            {"partial_pieces", partials_.size()},
            {"endgame", endgame()},
            {"peers", peers_.size()},
            {"readers", std::move(readers)}};
}

// --- self-check ----------------------------------------------------------------

bool Picker::consistent_order() const
{
    if (order_.size() != num_pieces_ || bucket_begin_.size() < 4 || bucket_begin_.front() != 0 ||
        bucket_begin_.back() != num_pieces_)
        return false;
    for (std::size_t b = 0; b + 1 < bucket_begin_.size(); ++b) {
        if (bucket_begin_[b] > bucket_begin_[b + 1])
            return false;
        for (std::uint32_t i = bucket_begin_[b]; i < bucket_begin_[b + 1]; ++i) {
            const std::uint32_t p = order_[i];
            if (pos_[p] != i || (candidate(p) ? avail_[p] + 1 : 0u) != b)
                return false;
        }
    }
    std::vector<std::uint32_t> avail(num_pieces_, 0);
    std::uint32_t seeds = 0;
    for (const auto &[key, p] : peers_) {
        seeds += p.seed;
        for (std::uint32_t i = 0; !p.seed && i < num_pieces_; ++i)
            avail[i] += p.have.test(i);
    }
    return avail == avail_ && seeds == seeds_;
}

bool Picker::consistent_requests() const
{
    std::size_t requests = 0;
    for (std::uint32_t slot = 0; slot < partials_.size(); ++slot) {
        const Partial &pp = partials_[slot];
        std::uint32_t unrequested = 0, received = 0;
        for (std::uint32_t i = 0; i < pp.blocks.size(); ++i) {
            const BlockState &bs = pp.blocks[i];
            received += bs.received;
            unrequested += !bs.received && bs.requests.empty();
            if (bs.received && !bs.requests.empty())
                return false;
            for (const Request &r : bs.requests) {
                auto it = peers_.find(r.peer);
                if (it == peers_.end())
                    return false;
                const auto &out = it->second.outstanding;
                if (std::count(out.begin(), out.end(), block_at(pp.piece, i)) != 1)
                    return false;
            }
            requests += bs.requests.size();
        }
        if (slot_[pp.piece] != slot || pp.unrequested != unrequested || pp.received != received ||
            pp.blocks.size() != blocks_of(pp.piece) || have_.test(pp.piece))
            return false;
    }
    std::size_t outstanding = 0;
    for (const auto &[key, p] : peers_)
        outstanding += p.outstanding.size();
    return requests == outstanding;
}

bool Picker::consistent() const
{
    std::uint32_t missing = 0;
    std::uint64_t unrequested = 0;
    for (std::uint32_t p = 0; p < num_pieces_; ++p) {
        if (slot_[p] != kNone && (slot_[p] >= partials_.size() || partials_[slot_[p]].piece != p))
            return false;
        if (candidate(p)) {
            ++missing;
            unrequested += candidate_unrequested(p);
        }
    }
    return missing == missing_ && unrequested == unrequested_ && consistent_order() && consistent_requests();
}

} // namespace openace::transport
