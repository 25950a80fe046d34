#include "transport/torrent.hpp"

#include <openace/engine.hpp>

#include "net/tls.hpp"
#include "net/uv_handle.hpp"
#include "transport/choker.hpp"
#include "transport/identity.hpp"
#include "transport/tracker.hpp"

#include <algorithm>
#include <cstring>

namespace openace::transport {

namespace {

// Our extension ids (what peers put in their extended messages to us).
constexpr std::uint8_t kOurPex = 1;
constexpr std::uint8_t kOurMetadata = 2;

constexpr int kMaxRequestDepth = 250;
constexpr int kMaxPendingUploads = 250;
constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr auto kRequestTimeout = std::chrono::seconds(30);
constexpr auto kKeepAlive = std::chrono::seconds(120);
constexpr auto kPexInterval = std::chrono::seconds(60);
constexpr std::int64_t kDefaultBitrate = 1'000'000; // bytes/s assumed before a reader has a rate (8 Mbit/s)
constexpr std::int64_t kMaxWindow = 64 << 20;

std::string hex_id(const PeerId &id)
{
    std::string s;
    for (auto b : id)
        s += (b >= 0x20 && b < 0x7f) ? static_cast<char>(b) : '.';
    return s;
}

wire::Message msg(wire::MsgType type, std::uint32_t index = 0, std::uint32_t begin = 0, std::uint32_t length = 0)
{
    wire::Message m;
    m.type = type;
    m.index = index;
    m.begin = begin;
    m.length = length;
    return m;
}

std::string client_name()
{
    return std::string("OpenAce ") + openace::version_string();
}

} // namespace

Torrent::Torrent(TransportContext &ctx, const InfoHash &info_hash, std::string name_hint)
    : ctx_(ctx), log_(ctx.log), info_hash_(info_hash), name_(std::move(name_hint))
{
    tick_timer_ = new uv_timer_t{};
    uv_timer_init(ctx_.loop, tick_timer_);
    tick_timer_->data = this;
    fast_timer_ = new uv_timer_t{};
    uv_timer_init(ctx_.loop, fast_timer_);
    fast_timer_->data = this;
}

Torrent::~Torrent()
{
    net::close_and_delete(tick_timer_);
    net::close_and_delete(fast_timer_);
    announcer_.reset();
    auto conns = connecting_;
    for (auto &[k, c] : peers_)
        conns.insert(c);
    peers_.clear();
    connecting_.clear();
    abandon_connections(ctx_, conns, "torrent closed");
}

void Torrent::set_metadata(Metainfo m, std::unique_ptr<Storage> storage, bool have_all)
{
    if (meta_)
        return;
    if (name_.empty())
        name_ = m.name;
    const auto n = static_cast<std::uint32_t>(m.piece_count());
    // Each client breaks rarest-first ties in its own order (from its peer id).
    std::uint64_t seed = 0;
    for (auto b : ctx_.peer_id)
        seed = seed * 131 + b;
    picker_ = std::make_unique<Picker>(n, m.piece_length, m.total_length, 16384, seed);
    if (wanted_end_ >= 0)
        picker_->set_wanted(wanted_begin_, wanted_end_);
    if (!storage)
        storage = ctx_.cache->open(m);
    storage_ = std::move(storage);
    storage_->on_evicted = [this](std::uint32_t piece) {
        if (picker_)
            picker_->clear_have(piece);
    };
    seeding_ = have_all;
    if (have_all)
        for (std::uint32_t i = 0; i < n; ++i)
            picker_->set_have(i);
    meta_ = std::move(m);
    for (auto &[key, c] : peers_) {
        on_bitfield_known(*c);
        send_ext_handshake(*c); // now with metadata_size
    }
    log_.info("torrent {}: metadata: '{}', {} pieces of {} bytes, {} file(s), {} bytes", to_hex(info_hash_), name_, n,
              meta_->piece_length, meta_->files.size(), meta_->total_length);
    if (on_metadata)
        on_metadata();
    fill_all_requests();
}

void Torrent::add_trackers(const std::vector<std::string> &urls)
{
    for (const auto &u : urls)
        if (!u.empty() && std::find(trackers_.begin(), trackers_.end(), u) == trackers_.end())
            trackers_.push_back(u);
}

void Torrent::add_peers(const std::vector<PeerAddress> &peers, bool explicit_peer)
{
    candidates_.add(peers, explicit_peer);
    if (started_)
        connect_more(clock::now());
}

void Torrent::start()
{
    if (started_)
        return;
    started_ = true;
    if (!trackers_.empty()) {
        announcer_ = std::make_unique<Announcer>(ctx_.loop, log_, trackers_);
        announcer_->make_request = [this] {
            AnnounceRequest r;
            r.info_hash = info_hash_;
            r.peer_id = ctx_.peer_id;
            r.port = ctx_.listen_port;
            r.uploaded = static_cast<std::int64_t>(uploaded_);
            r.downloaded = static_cast<std::int64_t>(downloaded_);
            std::int64_t left = meta_ ? meta_->total_length : 1;
            if (meta_ && picker_) {
                std::int64_t have = static_cast<std::int64_t>(picker_->have().count()) * meta_->piece_length;
                left = std::max<std::int64_t>(0, meta_->total_length - have);
                if (picker_->have().all())
                    left = 0;
            }
            r.left = left;
            return r;
        };
        announcer_->on_peers = [this](const std::vector<PeerAddress> &peers) { add_peers(peers); };
        announcer_->start();
    }
    uv_timer_start(tick_timer_, on_tick, 1000, 1000);
    uv_timer_start(fast_timer_, on_fast_tick, 100, 100);
    connect_more(clock::now());
}

void Torrent::stop(std::function<void()> done)
{
    stopping_ = true;
    uv_timer_stop(tick_timer_);
    uv_timer_stop(fast_timer_);
    auto conns = connecting_;
    for (auto &[k, c] : peers_)
        conns.insert(c);
    for (PeerConnection *c : conns)
        c->close("stopping");
    if (announcer_)
        announcer_->stop(std::move(done));
    else
        done();
}

// ------------------------------------------------------------ connections

void Torrent::connect_more(clock::time_point now)
{
    if (stopping_)
        return;
    candidates_.connect_more(now, peers_.size(), connecting_, info_hash_, this);
}

void Torrent::attach(PeerConnection *c)
{
    ++ctx_.connections;
    c->set_handler(this);
    c->send_handshake(ctx_.peer_id);
    on_handshake(*c);
}

void Torrent::on_handshake(PeerConnection &c)
{
    connecting_.erase(&c);
    if (c.peer_id() == ctx_.peer_id) {
        c.close("connected to ourselves");
        return;
    }
    if (ctx_.banned_ids.count(c.peer_id())) {
        c.close("banned peer");
        return;
    }
    for (auto &[k, other] : peers_)
        if (other->peer_id() == c.peer_id()) {
            c.close("already connected to this peer");
            return;
        }
    c.state.key = next_key_++;
    c.state.interest_changed = clock::now(); // the idle clock starts now
    peers_[c.state.key] = &c;
    log_.debug("torrent {}: peer {} ({}{}) connected", to_hex(info_hash_).substr(0, 8), c.address().to_string(),
               hex_id(c.peer_id()), c.is_tls() ? ", TLS" : "");
    if (c.peer_supports_extensions())
        send_ext_handshake(c);
    // Our pieces.
    if (picker_ && c.peer_supports_fast() && picker_->have().all()) {
        c.send(msg(wire::MsgType::HaveAll));
    } else if (picker_ && !picker_->have().none()) {
        wire::Message m = msg(wire::MsgType::Bitfield);
        m.payload = picker_->have().bytes();
        c.send(m);
    } else if (c.peer_supports_fast()) {
        c.send(msg(wire::MsgType::HaveNone));
    }
}

void Torrent::on_closed(PeerConnection &c, const std::string &reason, bool before_handshake)
{
    --ctx_.connections;
    connecting_.erase(&c);
    if (c.state.key != 0 && peers_.erase(c.state.key)) {
        if (picker_) {
            picker_->remove_peer(c.state.key);
        }
        uploads_.erase(c.state.key);
    }
    candidates_.closed(c, before_handshake);
    forget_sender(c.state.key);
    log_.debug("torrent {}: peer {} closed: {}", to_hex(info_hash_).substr(0, 8), c.address().to_string(), reason);
    if (!stopping_ && started_)
        fill_all_requests();
}

PeerConnection *Torrent::find(std::uint64_t key) const
{
    auto it = peers_.find(key);
    return it == peers_.end() ? nullptr : it->second;
}

// ------------------------------------------------------------ messages

void Torrent::on_message(PeerConnection &c, const wire::Message &m)
{
    using T = wire::MsgType;
    auto &s = c.state;
    const std::uint32_t n = picker_ ? picker_->have().size() : 0;
    auto bad_index = [&](std::uint32_t i) {
        if (picker_ && i >= n) {
            c.close("piece index " + std::to_string(i) + " out of range");
            return true;
        }
        return false;
    };
    switch (m.type) {
    case T::KeepAlive:
    case T::Port:
    case T::Suggest:
        break;
    case T::Choke:
        s.peer_choking = true;
        if (picker_ && !c.peer_supports_fast())
            picker_->peer_choked(s.key);
        break;
    case T::Unchoke:
        s.peer_choking = false;
        fill_requests(c);
        break;
    case T::Interested:
        s.peer_interested = true;
        s.interest_changed = clock::now();
        if (s.am_choking) {
            int unchoked = 0;
            for (auto &[k, p] : peers_)
                unchoked += !p->state.am_choking;
            if (unchoked < kUploadSlots + 1)
                set_choke(c, false);
        }
        break;
    case T::NotInterested:
        s.peer_interested = false;
        s.interest_changed = clock::now();
        break;
    case T::Have:
        if (bad_index(m.index))
            return;
        if (picker_) {
            if (!s.have.test(m.index)) {
                s.have.set(m.index);
                picker_->peer_have(s.key, m.index);
            }
            // One more piece can only make us interested (no rescan here).
            if (!s.am_interested && picker_->is_wanted(m.index) && !picker_->have().test(m.index))
                send_interest(c, true);
            fill_requests(c);
        } else {
            if (s.early_bitfield.empty())
                s.early_bitfield.assign(m.index / 8 + 1, '\0');
            if (m.index / 8 < 1 << 20) {
                if (s.early_bitfield.size() <= m.index / 8)
                    s.early_bitfield.resize(m.index / 8 + 1, '\0');
                s.early_bitfield[m.index / 8] = static_cast<char>(s.early_bitfield[m.index / 8] | (0x80 >> (m.index % 8)));
            }
        }
        break;
    case T::Bitfield:
        s.early_bitfield.assign(m.payload);
        s.have_all = s.have_none = false;
        if (picker_)
            on_bitfield_known(c);
        break;
    case T::HaveAll:
        s.have_all = true;
        s.have_none = false;
        if (picker_)
            on_bitfield_known(c);
        break;
    case T::HaveNone:
        s.have_none = true;
        s.have_all = false;
        if (picker_)
            on_bitfield_known(c);
        break;
    case T::Request: {
        if (bad_index(m.index))
            return;
        const bool can_serve = picker_ && picker_->have().test(m.index) && !s.am_choking && m.length <= 128 * 1024 &&
                               meta_ && static_cast<std::int64_t>(m.begin) + m.length <= meta_->piece_size(m.index);
        auto &q = uploads_[s.key];
        if (!can_serve || q.size() >= kMaxPendingUploads) {
            if (c.peer_supports_fast())
                c.send(msg(T::Reject, m.index, m.begin, m.length));
            break;
        }
        q.push_back({m.index, m.begin, m.length});
        serve_uploads(c);
        break;
    }
    case T::Cancel: {
        auto it = uploads_.find(s.key);
        if (it != uploads_.end())
            std::erase_if(it->second, [&](const Upload &u) {
                return u.piece == m.index && u.begin == m.begin && u.length == m.length;
            });
        break;
    }
    case T::Piece:
        if (bad_index(m.index))
            return;
        on_piece(c, m);
        break;
    case T::Reject:
        if (picker_)
            picker_->request_dropped(s.key, {m.index, m.begin, m.length});
        break;
    case T::AllowedFast:
        break; // we only request from peers that unchoked us
    case T::Extended:
        on_extended(c, m);
        break;
    }
}

void Torrent::on_bitfield_known(PeerConnection &c)
{
    auto &s = c.state;
    const std::uint32_t n = picker_->have().size();
    if (s.key == 0)
        return;
    Bitfield have(n);
    if (s.have_all) {
        have.set_all();
    } else if (!s.have_none && !s.early_bitfield.empty()) {
        std::string bytes = s.early_bitfield;
        bytes.resize((static_cast<std::size_t>(n) + 7) / 8, '\0');
        if (!have.assign_bytes(bytes, n)) {
            c.close("bad bitfield (spare bits set or wrong length)");
            return;
        }
    }
    std::string().swap(s.early_bitfield);
    picker_->remove_peer(s.key);
    if (have.all())
        picker_->add_peer_have_all(s.key);
    else
        picker_->add_peer(s.key, have);
    s.have = std::move(have);
    set_interest(c);
    fill_requests(c);
}

bool Torrent::peer_has_wanted(const PeerConnection &c) const
{
    if (!picker_)
        return false;
    const auto &have = picker_->have();
    const auto &theirs = c.state.have;
    if (theirs.none() || have.all())
        return false;
    std::uint32_t first = 0, last = have.size();
    if (wanted_end_ >= 0 && meta_) {
        first = piece_of(wanted_begin_);
        last = std::min(have.size(), piece_of(std::max<std::int64_t>(wanted_end_ - 1, 0)) + 1);
    }
    for (std::uint32_t i = first; i < last; ++i)
        if (theirs.test(i) && !have.test(i))
            return true;
    return false;
}

void Torrent::set_interest(PeerConnection &c)
{
    send_interest(c, peer_has_wanted(c));
}

void Torrent::send_interest(PeerConnection &c, bool want)
{
    if (want != c.state.am_interested) {
        c.state.am_interested = want;
        c.state.interest_changed = clock::now();
        c.send(msg(want ? wire::MsgType::Interested : wire::MsgType::NotInterested));
    }
}

void Torrent::on_piece(PeerConnection &c, const wire::Message &m)
{
    auto &s = c.state;
    const auto now = clock::now();
    ctx_.download.charge(static_cast<std::int64_t>(m.payload.size()), now);
    if (ctx_.download.in_debt(now))
        c.pause_reading();
    s.down_payload += m.payload.size();
    s.last_piece = now;
    downloaded_ += m.payload.size();
    if (is_openace_peer_id(c.peer_id()))
        from_openace_ += m.payload.size();
    if (!picker_ || !meta_)
        return;
    Picker::Block b{m.index, m.begin, static_cast<std::uint32_t>(m.payload.size())};
    const std::int64_t psize = meta_->piece_size(m.index);
    if (static_cast<std::int64_t>(m.begin) + static_cast<std::int64_t>(m.payload.size()) > psize) {
        c.close("block outside its piece");
        return;
    }
    bool was_new = false;
    auto others = picker_->block_received(s.key, b, &was_new);
    for (auto key : others)
        if (auto *o = find(key))
            o->send(msg(wire::MsgType::Cancel, b.piece, b.begin, b.length));
    if (!was_new || picker_->have().test(m.index) || verifying_.count(m.index)) {
        wasted_ += m.payload.size();
        fill_requests(c);
        return;
    }
    auto &buf = partial_[m.index];
    if (buf.empty())
        buf.resize(static_cast<std::size_t>(psize));
    std::memcpy(buf.data() + m.begin, m.payload.data(), m.payload.size());
    auto &senders = block_senders_[m.index];
    if (senders.empty())
        senders.assign(picker_->blocks_in_piece(m.index), 0);
    if (m.begin / wire::kBlockSize < senders.size())
        senders[m.begin / wire::kBlockSize] = s.key;
    if (!known_senders_.count(s.key))
        known_senders_.emplace(s.key, std::make_pair(c.peer_id(), listen_address(c)));
    if (picker_->piece_blocks_complete(m.index)) {
        std::string data = std::move(buf);
        partial_.erase(m.index);
        verifying_.insert(m.index);
        const std::uint32_t piece = m.index;
        // Several senders: keep a copy, so that if the piece fails, the
        // verified piece can later tell which of them sent the bad blocks.
        std::set<std::uint64_t> distinct(senders.begin(), senders.end());
        if (distinct.size() > 1)
            copies_[piece] = data;
        storage_->write_piece(piece, std::move(data),
                              [this, piece](bool ok, const std::string &error) { piece_verified(piece, ok, error); });
    }
    fill_requests(c);
}

void Torrent::piece_verified(std::uint32_t piece, bool ok, const std::string &error)
{
    verifying_.erase(piece);
    std::vector<std::uint64_t> senders = std::move(block_senders_[piece]);
    block_senders_.erase(piece);
    std::string copy = std::move(copies_[piece]);
    copies_.erase(piece);
    std::set<std::uint64_t> distinct(senders.begin(), senders.end());
    distinct.erase(0);
    if (!error.empty()) {
        log_.error("torrent {}: storing piece {} failed: {}", to_hex(info_hash_), piece, error);
        picker_->piece_failed(piece);
        if (on_error)
            on_error(error);
        return;
    }
    if (!ok) {
        ++hash_failures_;
        picker_->piece_failed(piece);
        log_.warn("torrent {}: piece {} failed its SHA-1 check ({} peer(s) sent blocks)", to_hex(info_hash_), piece,
                  distinct.size());
        if (distinct.size() == 1) {
            // It alone sent the whole bad piece.
            ban_key(*distinct.begin(), "sent a piece that failed its SHA-1 check");
        } else if (!copy.empty()) {
            // Guilt is decided once the piece verifies (see below).
            if (suspects_.size() >= 16)
                suspects_.erase(suspects_.begin());
            suspects_[piece] = {std::move(copy), std::move(senders)};
        }
        fill_all_requests();
        return;
    }
    if (auto it = suspects_.find(piece); it != suspects_.end()) {
        Suspect sus = std::move(it->second);
        suspects_.erase(it);
        storage_->read(piece, 0, static_cast<std::uint32_t>(meta_->piece_size(piece)),
                       [this, sus = std::move(sus)](std::string good, const std::string &err) {
                           if (!err.empty() || good.size() != sus.data.size())
                               return;
                           for (std::size_t b = 0; b < sus.senders.size(); ++b) {
                               const std::size_t off = b * wire::kBlockSize;
                               const std::size_t len = std::min<std::size_t>(wire::kBlockSize, good.size() - off);
                               if (sus.senders[b] && good.compare(off, len, sus.data, off, len) != 0)
                                   ban_key(sus.senders[b], "sent blocks that failed the SHA-1 check of their piece");
                           }
                       });
    }
    picker_->set_have(piece);
    // Interest that this piece may have ended is re-checked on the tick.
    for (auto &[k, c] : peers_)
        c->send(msg(wire::MsgType::Have, piece));
    if (complete() && announcer_)
        announcer_->completed();
    serve_readers();
    fill_all_requests();
}

void Torrent::forget_sender(std::uint64_t key)
{
    // Kept only while a block it sent may still prove it guilty.
    auto sent = [key](const std::vector<std::uint64_t> &senders) {
        return std::find(senders.begin(), senders.end(), key) != senders.end();
    };
    for (const auto &[piece, senders] : block_senders_)
        if (sent(senders))
            return;
    for (const auto &[piece, sus] : suspects_)
        if (sent(sus.senders))
            return;
    known_senders_.erase(key);
}

void Torrent::ban_key(std::uint64_t key, const std::string &why)
{
    if (PeerConnection *c = find(key)) {
        ban(*c, why);
        return;
    }
    auto it = known_senders_.find(key);
    if (it == known_senders_.end() || ctx_.banned_ids.count(it->second.first))
        return;
    ++bans_;
    ++ctx_.bans;
    ctx_.banned_ids.insert(it->second.first);
    ctx_.banned_addresses.insert(it->second.second);
    candidates_.erase(it->second.second);
    log_.warn("torrent {}: banned peer {} ({}), already gone: {}", to_hex(info_hash_), it->second.second.to_string(),
              hex_id(it->second.first), why);
}

void Torrent::ban(PeerConnection &c, const std::string &why)
{
    ++bans_;
    ++ctx_.bans;
    ctx_.banned_ids.insert(c.peer_id());
    const PeerAddress a = listen_address(c);
    ctx_.banned_addresses.insert(a);
    candidates_.erase(a);
    log_.warn("torrent {}: banned peer {} ({}): {}", to_hex(info_hash_), a.to_string(), hex_id(c.peer_id()), why);
    c.close("banned: " + why);
}

// ------------------------------------------------------------ requests

void Torrent::fill_requests(PeerConnection &c)
{
    auto &s = c.state;
    if (!picker_ || s.peer_choking || !s.am_interested || c.closing() || stopping_)
        return;
    int target = static_cast<int>(std::clamp(s.down_rate * 2.0 / wire::kBlockSize, 16.0, double(kMaxRequestDepth)));
    if (s.got_ext && s.ext.reqq > 0)
        target = std::min(target, s.ext.reqq);
    int room = target - static_cast<int>(picker_->outstanding_count(s.key));
    if (room <= 0)
        return;
    auto blocks = picker_->pick(s.key, room, clock::now());
    for (const auto &b : blocks)
        c.send(msg(wire::MsgType::Request, b.piece, b.begin, b.length));
}

void Torrent::fill_all_requests()
{
    if (!picker_ || stopping_)
        return;
    std::vector<std::pair<Picker::PeerKey, std::size_t>> q;
    for (auto &[k, c] : peers_)
        if (!c->state.peer_choking && c->state.am_interested)
            q.emplace_back(k, picker_->outstanding_count(k));
    for (auto key : Picker::by_queue_length(std::move(q)))
        if (auto *c = find(key))
            fill_requests(*c);
}

void Torrent::serve_uploads(PeerConnection &c)
{
    auto it = uploads_.find(c.state.key);
    if (it == uploads_.end())
        return;
    auto &q = it->second;
    const auto now = clock::now();
    while (!q.empty() && c.state.pending_uploads < 8 && c.queued_bytes() < PeerConnection::kLowWater &&
           !c.state.am_choking) {
        Upload u = q.front();
        if (!ctx_.upload.consume(u.length, now))
            break; // the fast tick tries again
        q.erase(q.begin());
        ++c.state.pending_uploads;
        const std::uint64_t key = c.state.key;
        storage_->read(u.piece, u.begin, u.length, [this, key, u](std::string data, const std::string &error) {
            PeerConnection *pc = find(key);
            if (!pc)
                return;
            --pc->state.pending_uploads;
            if (!error.empty()) {
                if (pc->peer_supports_fast())
                    pc->send(msg(wire::MsgType::Reject, u.piece, u.begin, u.length));
            } else {
                pc->state.up_payload += data.size();
                uploaded_ += data.size();
                pc->send_piece(u.piece, u.begin, std::move(data));
            }
            serve_uploads(*pc);
        });
    }
    if (q.empty())
        uploads_.erase(it);
}

void Torrent::on_writable(PeerConnection &c)
{
    if (c.state.key != 0)
        serve_uploads(c);
}

void Torrent::set_choke(PeerConnection &c, bool choke)
{
    if (c.state.am_choking == choke)
        return;
    c.state.am_choking = choke;
    c.send(msg(choke ? wire::MsgType::Choke : wire::MsgType::Unchoke));
    if (choke) {
        auto it = uploads_.find(c.state.key);
        if (it != uploads_.end()) {
            if (c.peer_supports_fast())
                for (const auto &u : it->second)
                    c.send(msg(wire::MsgType::Reject, u.piece, u.begin, u.length));
            uploads_.erase(it);
        }
    }
}

void Torrent::choke_round(bool rotate_optimistic)
{
    std::vector<ChokeCandidate> cands;
    const bool leeching = picker_ && !picker_->have().all();
    const auto now = clock::now();
    for (auto &[k, c] : peers_) {
        ChokeCandidate cc;
        cc.key = k;
        cc.interested = c->state.peer_interested;
        cc.rate = leeching ? c->state.down_rate : c->state.up_rate;
        cc.snubbed = leeching && c->state.am_interested && !c->state.peer_choking &&
                     c->state.last_piece != clock::time_point{} && now - c->state.last_piece > std::chrono::seconds(60);
        cands.push_back(cc);
    }
    std::vector<std::uint64_t> regular = choose_unchoked(cands, kUploadSlots, 0);
    if (rotate_optimistic || !find(optimistic_))
        optimistic_ = next_optimistic(cands, regular, optimistic_);
    auto chosen = choose_unchoked(cands, kUploadSlots, optimistic_);
    for (auto &[k, c] : peers_)
        set_choke(*c, std::find(chosen.begin(), chosen.end(), k) == chosen.end() && c->state.peer_interested);
}

// ------------------------------------------------------------ extensions

void Torrent::send_ext_handshake(PeerConnection &c)
{
    if (!c.peer_supports_extensions())
        return;
    wire::ExtHandshake h;
    if (ctx_.config->transport.pex)
        h.m["ut_pex"] = kOurPex;
    h.m["ut_metadata"] = kOurMetadata;
    if (meta_)
        h.metadata_size = static_cast<std::int64_t>(meta_->info_bytes.size());
    h.client = client_name();
    h.listen_port = ctx_.listen_port;
    h.reqq = kMaxPendingUploads;
    h.oa_tls = ctx_.tls != nullptr;
    c.send_extended(0, wire::encode_ext_handshake(h));
}

void Torrent::on_extended(PeerConnection &c, const wire::Message &m)
{
    if (m.ext_id == 0) {
        c.state.ext = wire::decode_ext_handshake(m.payload);
        c.state.got_ext = true;
        const auto &e = c.state.ext;
        // An OpenAce peer reached in plain that takes TLS: reconnect in TLS.
        if (e.oa_tls && ctx_.tls && c.outgoing() && !c.is_tls() && is_openace_peer_id(c.peer_id()) &&
            !ctx_.plain_only.count(c.address())) {
            ctx_.tls_capable.insert(c.address());
            c.close("upgrading to TLS");
            connect_more(clock::now());
            return;
        }
        if (!meta_ && e.metadata_size > 0 && e.metadata_size <= wire::kMaxMetadataSize && e.m.count("ut_metadata") &&
            e.m.at("ut_metadata") > 0) {
            if (metadata_size_ < 0) {
                metadata_size_ = e.metadata_size;
                std::size_t pieces = static_cast<std::size_t>((metadata_size_ + wire::kMetadataPieceSize - 1) /
                                                              wire::kMetadataPieceSize);
                meta_pieces_.assign(pieces, std::string());
                meta_requested_.assign(pieces, clock::time_point{});
            }
            request_metadata(clock::now());
        }
        return;
    }
    if (m.ext_id == kOurMetadata) {
        on_metadata_msg(c, m.payload);
    } else if (m.ext_id == kOurPex && ctx_.config->transport.pex) {
        wire::PexMsg p = wire::decode_pex(m.payload);
        add_peers(p.added);
    }
    // Unknown ids: extensions we did not offer; ignored.
}

void Torrent::on_metadata_msg(PeerConnection &c, std::string_view payload)
{
    wire::MetadataMsg msg = wire::decode_metadata_msg(payload);
    auto their_id = [&]() -> int {
        auto it = c.state.ext.m.find("ut_metadata");
        return it == c.state.ext.m.end() ? 0 : it->second;
    };
    if (msg.msg_type == 0) { // request
        if (their_id() <= 0)
            return;
        wire::MetadataMsg reply;
        reply.piece = msg.piece;
        if (meta_ && static_cast<std::size_t>(msg.piece) * wire::kMetadataPieceSize < meta_->info_bytes.size()) {
            reply.msg_type = 1;
            reply.total_size = static_cast<std::int64_t>(meta_->info_bytes.size());
            reply.data = std::string_view(meta_->info_bytes).substr(msg.piece * wire::kMetadataPieceSize,
                                                                   wire::kMetadataPieceSize);
        } else {
            reply.msg_type = 2;
        }
        c.send_extended(static_cast<std::uint8_t>(their_id()), wire::encode_metadata_msg(reply));
        return;
    }
    if (meta_ || metadata_size_ < 0 || msg.piece >= meta_pieces_.size())
        return;
    if (msg.msg_type == 2) {
        meta_requested_[msg.piece] = clock::time_point{};
        return;
    }
    if (msg.total_size != metadata_size_)
        return;
    const std::size_t expect = msg.piece + 1 == meta_pieces_.size()
                                   ? static_cast<std::size_t>(metadata_size_) - msg.piece * wire::kMetadataPieceSize
                                   : wire::kMetadataPieceSize;
    if (msg.data.size() != expect) {
        c.close("metadata piece " + std::to_string(msg.piece) + " has the wrong size");
        return;
    }
    meta_pieces_[msg.piece].assign(msg.data);
    if (std::all_of(meta_pieces_.begin(), meta_pieces_.end(), [](const std::string &p) { return !p.empty(); }))
        metadata_complete();
}

void Torrent::metadata_complete()
{
    std::string info;
    for (auto &p : meta_pieces_)
        info += p;
    meta_pieces_.clear();
    meta_requested_.clear();
    metadata_size_ = -1;
    if (sha1(info) != info_hash_) {
        log_.warn("torrent {}: metadata from peers does not match the infohash; asking again", to_hex(info_hash_));
        return; // the next extension handshakes start over
    }
    try {
        set_metadata(parse_info_dict(info));
    } catch (const std::exception &e) {
        log_.error("torrent {}: metadata is invalid: {}", to_hex(info_hash_), e.what());
        if (on_error)
            on_error(std::string("metadata from peers is invalid: ") + e.what());
    }
}

void Torrent::request_metadata(clock::time_point now)
{
    if (meta_ || metadata_size_ < 0)
        return;
    std::vector<PeerConnection *> capable;
    for (auto &[k, c] : peers_) {
        auto it = c->state.ext.m.find("ut_metadata");
        if (c->state.got_ext && it != c->state.ext.m.end() && it->second > 0 &&
            c->state.ext.metadata_size == metadata_size_)
            capable.push_back(c);
    }
    if (capable.empty())
        return;
    std::size_t next = 0;
    for (std::size_t i = 0; i < meta_pieces_.size(); ++i) {
        if (!meta_pieces_[i].empty() || (meta_requested_[i] != clock::time_point{} && now - meta_requested_[i] < std::chrono::seconds(5)))
            continue;
        PeerConnection *c = capable[next++ % capable.size()];
        wire::MetadataMsg req;
        req.msg_type = 0;
        req.piece = static_cast<std::uint32_t>(i);
        c->send_extended(static_cast<std::uint8_t>(c->state.ext.m.at("ut_metadata")), wire::encode_metadata_msg(req));
        meta_requested_[i] = now;
    }
}

void Torrent::send_pex()
{
    if (!ctx_.config->transport.pex)
        return;
    std::set<PeerAddress> current;
    for (auto &[k, c] : peers_)
        if (c->outgoing() || (c->state.got_ext && c->state.ext.listen_port))
            current.insert(listen_address(*c));
    wire::PexMsg diff = pex_update(pex_last_, current);
    if (diff.added.empty() && diff.dropped.empty())
        return;
    for (auto &[k, c] : peers_) {
        auto it = c->state.ext.m.find("ut_pex");
        if (!c->state.got_ext || it == c->state.ext.m.end() || it->second <= 0)
            continue;
        wire::PexMsg m = diff;
        std::erase(m.added, c->address());
        c->send_extended(static_cast<std::uint8_t>(it->second), wire::encode_pex(m));
    }
}

// ------------------------------------------------------------ timers

void Torrent::on_tick(uv_timer_t *t)
{
    static_cast<Torrent *>(t->data)->tick();
}

void Torrent::on_fast_tick(uv_timer_t *t)
{
    static_cast<Torrent *>(t->data)->fast_tick();
}

void Torrent::tick()
{
    const auto now = clock::now();
    ++ticks_;
    // Rates (payload bytes/s, smoothed over a few seconds).
    auto smooth = [](double old, double sample) { return old * 0.6 + sample * 0.4; };
    down_rate_ = smooth(down_rate_, static_cast<double>(downloaded_ - down_mark_));
    up_rate_ = smooth(up_rate_, static_cast<double>(uploaded_ - up_mark_));
    down_mark_ = downloaded_;
    up_mark_ = uploaded_;
    std::vector<PeerConnection *> all;
    for (auto &[k, c] : peers_)
        all.push_back(c);
    for (PeerConnection *c : all) {
        auto &s = c->state;
        s.down_rate = smooth(s.down_rate, static_cast<double>(s.down_payload - s.down_mark));
        s.up_rate = smooth(s.up_rate, static_cast<double>(s.up_payload - s.up_mark));
        s.down_mark = s.down_payload;
        s.up_mark = s.up_payload;
        if (s.am_interested)
            set_interest(*c); // pieces we got since may have ended it
        // Requests that went unanswered: back to the pool.
        if (picker_ && picker_->outstanding_count(s.key) > 0 && !s.peer_choking) {
            auto since = s.last_piece == clock::time_point{} ? now - c->created() : now - s.last_piece;
            if (since > kRequestTimeout) {
                picker_->peer_choked(s.key);
                s.last_piece = now;
            }
        }
        const bool idle = !s.am_interested && !s.peer_interested && now - s.interest_changed > ctx_.idle_timeout;
        if (idle || now - c->last_received() > ctx_.idle_timeout) {
            c->close("idle");
            continue;
        }
        if (now - c->last_sent() > kKeepAlive)
            c->send(msg(wire::MsgType::KeepAlive));
    }
    // Outgoing connections stuck before their handshake.
    std::vector<PeerConnection *> stuck;
    for (PeerConnection *c : connecting_)
        if (now - c->created() > kConnectTimeout)
            stuck.push_back(c);
    for (PeerConnection *c : stuck)
        c->close("no handshake within 10 s");

    if (ticks_ % 10 == 1)
        choke_round(ticks_ % 30 == 1);
    if (now - last_pex_ > kPexInterval) {
        last_pex_ = now;
        send_pex();
    }
    request_metadata(now);
    connect_more(now);
    if (announcer_ && peers_.size() < 5)
        announcer_->announce_now();
    if (picker_ && !readers_.empty()) {
        for (auto &[id, r] : readers_) {
            double sample = static_cast<double>(r.consumed - r.consumed_mark);
            r.rate = smooth(r.rate, sample);
            r.consumed_mark = r.consumed;
        }
        update_reader_windows(now);
    }
}

void Torrent::fast_tick()
{
    const auto now = clock::now();
    if (!ctx_.download.in_debt(now))
        for (auto &[k, c] : peers_)
            c->resume_reading();
    for (auto &[k, c] : peers_)
        if (uploads_.count(k))
            serve_uploads(*c);
    // Late time-critical blocks are re-requested by the picker.
    if (picker_ && !readers_.empty())
        fill_all_requests();
}

// ------------------------------------------------------------ readers

std::uint32_t Torrent::piece_of(std::int64_t offset) const
{
    return static_cast<std::uint32_t>(offset / meta_->piece_length);
}

void Torrent::set_wanted(std::int64_t begin, std::int64_t end)
{
    wanted_begin_ = begin;
    wanted_end_ = end;
    if (picker_)
        picker_->set_wanted(begin, end);
    for (auto &[k, c] : peers_)
        set_interest(*c);
}

bool Torrent::complete() const
{
    return picker_ && picker_->complete();
}

int Torrent::open_reader(std::int64_t begin, std::int64_t end)
{
    int id = next_reader_++;
    Reader &r = readers_[id];
    r.begin = begin;
    r.end = end;
    r.position = begin;
    update_reader_windows(clock::now());
    fill_all_requests();
    return id;
}

void Torrent::seek(int reader, std::int64_t position)
{
    auto it = readers_.find(reader);
    if (it == readers_.end())
        return;
    it->second.position = std::clamp(position, it->second.begin, it->second.end);
    update_reader_windows(clock::now());
    fill_all_requests();
}

void Torrent::close_reader(int reader)
{
    readers_.erase(reader);
    if (picker_)
        picker_->remove_reader(reader);
}

void Torrent::update_reader_windows(clock::time_point now)
{
    if (!picker_ || !meta_)
        return;
    std::vector<std::pair<std::uint32_t, std::uint32_t>> pins;
    const double seconds = std::max(1.0, ctx_.config->streaming.buffer_size);
    for (auto &[id, r] : readers_) {
        const double rate = std::max(static_cast<double>(kDefaultBitrate), r.rate);
        std::int64_t window = static_cast<std::int64_t>(rate * seconds);
        window = std::clamp<std::int64_t>(window, 2 * meta_->piece_length, std::max(kMaxWindow, 2 * meta_->piece_length));
        window = std::min(window, r.end - r.position);
        picker_->set_reader(id, r.position, std::max<std::int64_t>(window, 1), rate, now);
        std::uint32_t first = piece_of(std::max(r.begin, r.position - meta_->piece_length));
        std::uint32_t last = std::min<std::uint32_t>(static_cast<std::uint32_t>(meta_->piece_count()),
                                                     piece_of(std::min(r.end, r.position + window)) + 1);
        pins.emplace_back(first, last);
    }
    storage_->pin(std::move(pins));
}

std::int64_t Torrent::reader_buffered(int reader) const
{
    auto it = readers_.find(reader);
    if (it == readers_.end() || !picker_)
        return 0;
    const Reader &r = it->second;
    std::int64_t pos = r.position;
    while (pos < r.end && picker_->have().test(piece_of(pos)))
        pos = (static_cast<std::int64_t>(piece_of(pos)) + 1) * meta_->piece_length;
    return std::min(pos, r.end) - r.position;
}

void Torrent::read(int reader, std::size_t max, std::function<void(std::string, const std::string &)> cb)
{
    auto it = readers_.find(reader);
    if (it == readers_.end()) {
        cb({}, "unknown reader");
        return;
    }
    Reader &r = it->second;
    r.want = std::max<std::size_t>(max, 1);
    r.cb = std::move(cb);
    deliver(r, reader);
}

void Torrent::serve_readers()
{
    std::vector<int> ids;
    for (auto &[id, r] : readers_)
        if (r.cb && !r.reading)
            ids.push_back(id);
    for (int id : ids) {
        auto it = readers_.find(id);
        if (it != readers_.end())
            deliver(it->second, id);
    }
}

void Torrent::deliver(Reader &r, int id)
{
    if (!r.cb || r.reading || !picker_ || !meta_)
        return;
    if (r.position >= r.end) {
        auto cb = std::move(r.cb);
        r.cb = nullptr;
        cb({}, {}); // end of range
        return;
    }
    const std::uint32_t piece = piece_of(r.position);
    if (!picker_->have().test(piece)) {
        update_reader_windows(clock::now());
        fill_all_requests();
        return; // piece_verified() calls again
    }
    const std::int64_t piece_start = static_cast<std::int64_t>(piece) * meta_->piece_length;
    const std::int64_t piece_end = piece_start + meta_->piece_size(piece);
    const std::int64_t len = std::min<std::int64_t>({static_cast<std::int64_t>(r.want), piece_end - r.position,
                                                     r.end - r.position});
    r.reading = true;
    storage_->read(piece, static_cast<std::uint32_t>(r.position - piece_start), static_cast<std::uint32_t>(len),
                   [this, id, piece](std::string data, const std::string &error) {
                       auto it = readers_.find(id);
                       if (it == readers_.end())
                           return;
                       Reader &rr = it->second;
                       rr.reading = false;
                       if (!error.empty()) {
                           if (!storage_->has_piece(piece)) { // evicted meanwhile: fetch it again
                               picker_->clear_have(piece);
                               deliver(rr, id);
                               return;
                           }
                           auto cb = std::move(rr.cb);
                           rr.cb = nullptr;
                           cb({}, error);
                           return;
                       }
                       rr.position += static_cast<std::int64_t>(data.size());
                       rr.consumed += static_cast<std::int64_t>(data.size());
                       auto cb = std::move(rr.cb);
                       rr.cb = nullptr;
                       update_reader_windows(clock::now());
                       cb(std::move(data), {});
                   });
}

// ------------------------------------------------------------ status

std::size_t Torrent::memory_bytes() const
{
    std::size_t n = sizeof(*this);
    for (auto &[k, c] : peers_)
        n += c->memory_bytes();
    for (auto &[p, buf] : partial_)
        n += buf.capacity();
    return n;
}

nlohmann::json Torrent::status() const
{
    nlohmann::json j;
    j["infohash"] = to_hex(info_hash_);
    j["name"] = name_;
    j["metadata"] = meta_.has_value();
    std::size_t seeds = 0, tls = 0;
    for (auto &[k, c] : peers_) {
        seeds += c->state.have.size() > 0 && c->state.have.all();
        tls += c->is_tls();
    }
    j["peers"] = peers_.size();
    j["seeds"] = seeds;
    j["tls_peers"] = tls;
    j["connecting"] = connecting_.size();
    j["known_peers"] = candidates_.size();
    j["download_rate"] = static_cast<std::int64_t>(down_rate_);
    j["upload_rate"] = static_cast<std::int64_t>(up_rate_);
    j["downloaded"] = downloaded_;
    j["downloaded_from_openace"] = from_openace_;
    j["uploaded"] = uploaded_;
    j["wasted"] = wasted_;
    j["hash_failures"] = hash_failures_;
    j["bans"] = bans_;
    if (meta_ && picker_) {
        j["total_size"] = meta_->total_length;
        j["pieces"] = meta_->piece_count();
        j["pieces_have"] = picker_->have().count();
        j["piece_length"] = meta_->piece_length;
        j["picker"] = picker_->status();
    }
    if (announcer_)
        j["trackers"] = announcer_->status();
    return j;
}

} // namespace openace::transport
