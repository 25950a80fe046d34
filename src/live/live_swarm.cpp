#include "live/live_swarm.hpp"

#include "core/error.hpp"
#include "core/sha1.hpp"
#include "live/ecdsa.hpp"
#include "net/uv_handle.hpp"
#include "transport/identity.hpp"
#include "transport/tracker.hpp"

#include <openace/engine.hpp>

#include <algorithm>
#include <cmath>

namespace openace::live {

using transport::PeerAddress;
using transport::PeerConnection;
namespace wire = transport::wire;

namespace {

constexpr std::uint8_t kOurLive = 1;
constexpr std::uint8_t kOurPex = 2;
constexpr std::size_t kMaxUploadQueue = 8;  // a peer's requests we hold (docs/protocol.md)
constexpr std::size_t kAskPerPeer = 3;      // our requests outstanding at one peer
constexpr std::size_t kMaxOutstanding = 16; // our requests outstanding in all
constexpr std::uint64_t kInOrder = 2;       // pieces at the play position fetched strictly in order
constexpr auto kRefusedFor = std::chrono::milliseconds(1000);
constexpr auto kJoinWait = std::chrono::milliseconds(300);
constexpr auto kConnectTimeout = std::chrono::seconds(10);
constexpr auto kKeepAlive = std::chrono::seconds(60);
constexpr auto kPexInterval = std::chrono::seconds(30);
constexpr std::size_t kWindowBytes = 512u << 20;

std::int64_t unix_ms()
{
    using namespace std::chrono;
    return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

} // namespace

LiveSwarm::LiveSwarm(transport::TransportContext &ctx, core::Logger log, const ContentId &id)
    : ctx_(ctx), log_(std::move(log)), id_(id), name_(to_hex(id).substr(0, 8)),
      candidates_(ctx, std::chrono::milliseconds(500))
{
    tick_timer_.init(this, uv_timer_init, ctx_.loop);
    fast_timer_.init(this, uv_timer_init, ctx_.loop);
}

LiveSwarm::~LiveSwarm()
{
    announcer_.reset();
    auto conns = connecting_;
    for (auto &[k, p] : peers_)
        conns.insert(p.c);
    peers_.clear();
    connecting_.clear();
    transport::abandon_connections(ctx_, conns, "live session closed");
}

bool LiveSwarm::set_descriptor(const std::string &encoded)
{
    if (descriptor_)
        return true;
    if (core::Sha1::hash(encoded) != id_)
        return false;
    try {
        LiveDescriptor d = parse_descriptor(encoded);
        verifier_ = std::make_unique<LiveVerifier>(d);
        descriptor_ = std::move(d);
    } catch (const Error &e) {
        log_.warn("live {}: descriptor refused: {}", name_, e.detail());
        return false;
    }
    descriptor_bytes_ = encoded;
    window_ = std::make_unique<LiveWindow>(window_pieces(), kWindowBytes);
    log_.info("live {}: descriptor '{}' ({} s pieces)", name_, descriptor_->name, descriptor_->piece_duration);
    // Tell the peers (a repeated extension handshake now carries
    // oa_live_desc), and learn which of them is the broadcaster.
    const transport::PeerId source_id = transport::peer_id_for_key(descriptor_->public_key_der);
    std::vector<std::uint64_t> keys;
    for (auto &[k, p] : peers_) {
        p.is_source = p.c->peer_id() == source_id;
        send_ext_handshake(*p.c); // also to peers whose own has not come yet
        keys.push_back(k);
    }
    // Heads that came before the descriptor (a check may ban, so by key).
    for (std::uint64_t k : keys)
        if (Peer *p = find(k); p && p->pending_head) {
            wire::LiveHead h = std::move(*p->pending_head);
            p->pending_head.reset();
            on_head(*p, h);
        }
    return true;
}

std::uint64_t LiveSwarm::window_pieces() const
{
    const double piece = descriptor_ ? descriptor_->piece_duration : 1.0;
    return std::max<std::uint64_t>(4, static_cast<std::uint64_t>(std::ceil(ctx_.config->live.window_seconds / piece)));
}

std::int64_t LiveSwarm::window_ms() const
{
    return static_cast<std::int64_t>(ctx_.config->live.window_seconds * 1000);
}

std::uint64_t LiveSwarm::newest_known() const
{
    std::uint64_t n = 0;
    if (window_ && window_->newest())
        n = *window_->newest();
    if (head_)
        n = std::max(n, head_->sequence);
    return n;
}

std::optional<std::uint64_t> LiveSwarm::newest() const
{
    if (window_ && window_->newest())
        return window_->newest();
    return std::nullopt;
}

LiveSwarm::PieceRef LiveSwarm::piece(std::uint64_t seq) const
{
    return window_ ? window_->get(seq) : nullptr;
}

std::optional<std::uint64_t> LiveSwarm::oldest() const
{
    return window_ ? window_->oldest() : std::nullopt;
}

// ------------------------------------------------------------ lifecycle

void LiveSwarm::add_trackers(const std::vector<std::string> &urls)
{
    for (const auto &u : urls)
        if (!u.empty() && std::find(trackers_.begin(), trackers_.end(), u) == trackers_.end())
            trackers_.push_back(u);
}

void LiveSwarm::add_peers(const std::vector<PeerAddress> &peers, bool explicit_peer)
{
    candidates_.add(peers, explicit_peer);
    if (started_ && !stopping_)
        candidates_.connect_more(clock::now(), peers_.size(), connecting_, id_, this);
}

void LiveSwarm::start()
{
    if (started_)
        return;
    started_ = true;
    if (!trackers_.empty()) {
        announcer_ = std::make_unique<transport::Announcer>(ctx_.loop, log_, trackers_);
        announcer_->make_request = [this] {
            transport::AnnounceRequest r;
            r.info_hash = id_;
            r.peer_id = ctx_.peer_id;
            r.port = ctx_.listen_port;
            r.uploaded = static_cast<std::int64_t>(uploaded_);
            r.downloaded = static_cast<std::int64_t>(downloaded_);
            r.left = source_ ? 0 : 1; // a live stream never completes; the source seeds it
            return r;
        };
        announcer_->on_peers = [this](const std::vector<PeerAddress> &peers) { add_peers(peers); };
        announcer_->start();
    }
    uv_timer_start(tick_timer_.get(), on_tick, 1000, 1000);
    uv_timer_start(fast_timer_.get(), on_fast_tick, 50, 50);
    candidates_.connect_more(clock::now(), peers_.size(), connecting_, id_, this);
}

void LiveSwarm::stop(std::function<void()> done)
{
    stopping_ = true;
    uv_timer_stop(tick_timer_.get());
    uv_timer_stop(fast_timer_.get());
    auto conns = connecting_;
    for (auto &[k, p] : peers_)
        conns.insert(p.c);
    for (PeerConnection *c : conns)
        c->close("stopping");
    if (announcer_)
        announcer_->stop(std::move(done));
    else
        done();
}

// ------------------------------------------------------------ connections

void LiveSwarm::attach(PeerConnection *c)
{
    ++ctx_.connections;
    c->set_handler(this);
    if (static_cast<int>(peers_.size() + connecting_.size()) >= ctx_.config->engine.max_peers) {
        c->close("too many peers (engine.max_peers)");
        return;
    }
    c->send_handshake(ctx_.peer_id);
    on_handshake(*c);
}

void LiveSwarm::on_handshake(PeerConnection &c)
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
    if (!c.peer_supports_extensions()) {
        c.close("not a live peer (no extension protocol)");
        return;
    }
    for (auto &[k, p] : peers_)
        if (p.c->peer_id() == c.peer_id()) {
            c.close("already connected to this peer");
            return;
        }
    c.state.key = next_key_++;
    c.set_max_message_length(wire::kMaxLiveMessage);
    Peer &p = peers_[c.state.key];
    p.c = &c;
    if (descriptor_)
        p.is_source = transport::peer_id_for_key(descriptor_->public_key_der) == c.peer_id();
    log_.debug("live {}: peer {} connected{}", name_, c.address().to_string(), c.is_tls() ? " (TLS)" : "");
    send_ext_handshake(c);
}

void LiveSwarm::on_closed(PeerConnection &c, const std::string &reason, bool before_handshake)
{
    --ctx_.connections;
    connecting_.erase(&c);
    if (c.state.key != 0)
        peers_.erase(c.state.key);
    for (auto it = outstanding_.begin(); it != outstanding_.end();) {
        std::erase_if(it->second, [&](const Outstanding &o) { return o.peer == c.state.key; });
        it = it->second.empty() ? outstanding_.erase(it) : std::next(it);
    }
    candidates_.closed(c, before_handshake);
    log_.debug("live {}: peer {} closed: {}", name_, c.address().to_string(), reason);
}

LiveSwarm::Peer *LiveSwarm::find(std::uint64_t key)
{
    auto it = peers_.find(key);
    return it == peers_.end() ? nullptr : &it->second;
}

LiveSwarm::Peer *LiveSwarm::peer_of(PeerConnection &c)
{
    return c.state.key ? find(c.state.key) : nullptr;
}

void LiveSwarm::send_ext_handshake(PeerConnection &c)
{
    wire::ExtHandshake h;
    h.m[wire::kLiveExtension] = kOurLive;
    if (ctx_.config->transport.pex)
        h.m["ut_pex"] = kOurPex;
    h.client = std::string("OpenAce ") + openace::version_string();
    h.listen_port = ctx_.listen_port;
    h.oa_tls = ctx_.tls != nullptr;
    h.live_window = static_cast<std::int64_t>(window_pieces());
    if (auto n = newest())
        h.live_newest = static_cast<std::int64_t>(*n);
    if (descriptor_)
        h.live_desc_size = static_cast<std::int64_t>(descriptor_bytes_.size());
    c.send_extended(0, wire::encode_ext_handshake(h));
}

void LiveSwarm::send_live(Peer &p, const std::string &payload)
{
    if (p.live_id > 0 && !p.c->closing())
        p.c->send_extended(static_cast<std::uint8_t>(p.live_id), payload);
}

void LiveSwarm::ban(Peer &p, const std::string &why)
{
    ++bans_;
    ++ctx_.bans;
    ctx_.banned_ids.insert(p.c->peer_id());
    const PeerAddress a = transport::listen_address(*p.c);
    ctx_.banned_addresses.insert(a);
    candidates_.erase(a);
    log_.warn("live {}: banned peer {}: {}", name_, a.to_string(), why);
    p.c->close("banned: " + why); // erases p
}

// ------------------------------------------------------------ messages

void LiveSwarm::on_message(PeerConnection &c, const wire::Message &m)
{
    Peer *p = peer_of(c);
    if (!p)
        return;
    using T = wire::MsgType;
    switch (m.type) {
    case T::KeepAlive:
    case T::Port:
    case T::Choke:
    case T::Unchoke:
    case T::Interested:
    case T::NotInterested:
    case T::HaveNone:
    case T::AllowedFast:
        break;
    case T::Extended:
        try {
            on_extended(c, *p, m);
        } catch (const Error &e) {
            c.close(e.detail());
        }
        break;
    default:
        c.close("BitTorrent piece message in a live swarm");
        break;
    }
}

void LiveSwarm::on_extended(PeerConnection &c, Peer &p, const wire::Message &m)
{
    if (m.ext_id == 0) {
        c.state.ext = wire::decode_ext_handshake(m.payload);
        c.state.got_ext = true;
        const auto &e = c.state.ext;
        auto live = e.m.find(wire::kLiveExtension);
        if (live == e.m.end() || live->second <= 0) {
            c.close("not a live peer (no oa_live)");
            return;
        }
        // An OpenAce peer reached in plain that takes TLS: reconnect in TLS.
        if (e.oa_tls && ctx_.tls && c.outgoing() && !c.is_tls() && transport::is_openace_peer_id(c.peer_id()) &&
            !ctx_.plain_only.count(c.address())) {
            ctx_.tls_capable.insert(c.address());
            c.close("upgrading to TLS");
            candidates_.connect_more(clock::now(), peers_.size(), connecting_, id_, this);
            return;
        }
        const bool first = !p.ext;
        p.ext = true;
        p.live_id = live->second;
        auto pex = e.m.find("ut_pex");
        p.pex_id = pex == e.m.end() ? 0 : pex->second;
        p.window = e.live_window > 0 ? static_cast<std::uint64_t>(e.live_window) : 1;
        if (!descriptor_ && e.live_desc_size > 0 && !p.desc_asked) {
            p.desc_asked = true;
            send_live(p, wire::encode_live_desc_request());
        }
        if (first) {
            send_state(p);
            // The last lines of the chat (an hour at most), oldest first.
            auto lines = chat_.history();
            const std::size_t from = lines.size() > 50 ? lines.size() - 50 : 0;
            for (std::size_t i = from; i < lines.size(); ++i)
                send_live(p, wire::encode_live_chat(lines[i]));
        }
        return;
    }
    if (m.ext_id == kOurPex) {
        if (ctx_.config->transport.pex)
            add_peers(wire::decode_pex(m.payload).added);
        return;
    }
    if (m.ext_id != kOurLive || !p.ext)
        return; // extensions we did not offer
    on_live(p, wire::decode_live(m.payload));
}

void LiveSwarm::send_state(Peer &p)
{
    if (!window_ || !window_->newest() || !p.ext)
        return;
    PieceRef newest = window_->get(*window_->newest());
    wire::LiveHead h{newest->sequence, newest->timestamp_ms, sha256(newest->data), newest->signature};
    send_live(p, wire::encode_live_head(h));
    send_live(p, wire::encode_live_have(window_->held().ranges(wire::kMaxLiveRanges)));
}

void LiveSwarm::on_live(Peer &p, const wire::LiveMsg &m)
{
    using T = wire::LiveMsg::Type;
    switch (m.type) {
    case T::Head:
        on_head(p, m.head);
        break;
    case T::Have: {
        const std::uint64_t floor = window_ ? window_->floor() : 0;
        for (auto [first, last] : m.ranges)
            if (last >= floor)
                p.have.insert(std::max(first, floor), last);
        break;
    }
    case T::Request:
        on_request(p, m.sequence);
        break;
    case T::Piece:
        on_piece(p, m.piece);
        break;
    case T::Reject: {
        p.asked.erase(m.sequence);
        p.refused[m.sequence] = clock::now();
        ++rejected_;
        auto it = outstanding_.find(m.sequence);
        if (it != outstanding_.end()) {
            std::erase_if(it->second, [&](const Outstanding &o) { return o.peer == p.c->state.key; });
            if (it->second.empty())
                outstanding_.erase(it);
        }
        break;
    }
    case T::DescRequest:
        if (descriptor_)
            send_live(p, wire::encode_live_desc(descriptor_bytes_));
        break;
    case T::Desc:
        if (descriptor_)
            break;
        if (!p.desc_asked) {
            p.c->close("descriptor we did not ask for");
            break;
        }
        if (!set_descriptor(m.descriptor))
            ban(p, "descriptor does not match the content id");
        break;
    case T::Chat:
        on_chat(p, m.chat);
        break;
    case T::Unknown:
        break; // room to grow: ignored
    }
}

void LiveSwarm::on_head(Peer &p, const wire::LiveHead &h)
{
    if (!verifier_) {
        p.pending_head = h; // checked once the descriptor is known
        return;
    }
    const std::uint64_t newest = head_ || (window_ && window_->newest()) ? newest_known() : h.sequence;
    // A fresh head may jump far ahead of what we know (a broadcaster that
    // restarted): the timestamp check is the replay protection then.
    const bool far = h.sequence > newest && h.sequence - newest > window_pieces();
    // Every neighbour sends the same head: check each one signature once.
    Verdict v = Verdict::Ok;
    if (!is_verified(h.sequence, h.timestamp_ms, h.data_sha256, h.signature))
        v = verifier_->verify_head(h.sequence, h.timestamp_ms, h.data_sha256, h.signature, far ? h.sequence : newest,
                                   window_pieces(), unix_ms(), window_ms());
    if (v == Verdict::OutsideWindow)
        return;
    if (v != Verdict::Ok) {
        ban(p, std::string("head: ") + to_string(v));
        return;
    }
    remember_verified(h.sequence, h.timestamp_ms, h.data_sha256, h.signature);
    if (!p.head || *p.head < h.sequence)
        p.head = h.sequence;
    if (!head_ || h.sequence > head_->sequence) {
        if (!head_)
            first_head_ = clock::now();
        head_ = h;
        known_since_.emplace(h.sequence, clock::now());
    }
    head_senders_.insert(p.c->state.key);
    if (far && position_) {
        // The stream jumped (a restart): what lies between will never come.
        log_.info("live {}: stream jumped from {} to {}", name_, *position_, h.sequence);
    }
}

void LiveSwarm::on_request(Peer &p, std::uint64_t seq)
{
    // The broadcaster too answers whatever it is asked: it steers viewers
    // to each other by offering each piece to few of them (announce()).
    const bool allow = window_ && window_->has(seq) && p.uploads.size() < kMaxUploadQueue;
    if (!allow) {
        send_live(p, wire::encode_live_reject(seq));
        return;
    }
    p.uploads.push_back(seq);
    serve_uploads(p);
}

void LiveSwarm::serve_uploads(Peer &p)
{
    while (!p.uploads.empty() && p.c->queued_bytes() < PeerConnection::kLowWater && !p.c->closing()) {
        const std::uint64_t seq = p.uploads.front();
        p.uploads.pop_front();
        PieceRef piece = window_ ? window_->get(seq) : nullptr;
        if (!piece) {
            send_live(p, wire::encode_live_reject(seq));
            continue;
        }
        const auto now = clock::now();
        if (ctx_.upload.in_debt(now)) {
            p.uploads.push_front(seq); // over the upload limit: the next tick resumes
            return;
        }
        ctx_.upload.charge(static_cast<std::int64_t>(piece->data.size()), now);
        send_live(p, wire::encode_live_piece(*piece));
        uploaded_ += piece->data.size();
        p.have.insert(seq);
    }
}

void LiveSwarm::on_writable(PeerConnection &c)
{
    if (Peer *p = peer_of(c))
        serve_uploads(*p);
}

void LiveSwarm::on_piece(Peer &p, LivePiece piece)
{
    const std::uint64_t seq = piece.sequence;
    const bool asked = p.asked.erase(seq) != 0;
    auto out = outstanding_.find(seq);
    if (out != outstanding_.end()) {
        std::erase_if(out->second, [&](const Outstanding &o) { return o.peer == p.c->state.key; });
        if (out->second.empty())
            outstanding_.erase(out);
    }
    if (!asked) {
        ban(p, "piece " + std::to_string(seq) + " that was not asked for");
        return;
    }
    if (!verifier_)
        return;
    if (window_->has(seq)) {
        ++duplicates_; // asked twice (late); the first copy won
        return;
    }
    const std::uint64_t newest = head_ || window_->newest() ? newest_known() : seq;
    // A piece whose head was verified needs only its data hash checked.
    const auto hash = sha256(piece.data);
    Verdict v = Verdict::Ok;
    if (!is_verified(seq, piece.timestamp_ms, hash, piece.signature))
        v = verifier_->verify(piece, newest, window_pieces(), unix_ms(), window_ms());
    if (v == Verdict::OutsideWindow)
        return;
    if (v != Verdict::Ok) {
        ban(p, std::string("piece ") + std::to_string(seq) + ": " + to_string(v));
        return;
    }
    remember_verified(seq, piece.timestamp_ms, hash, piece.signature);
    p.bytes_from += piece.data.size();
    downloaded_ += piece.data.size();
    if (p.is_source)
        from_source_ += piece.data.size();
    p.have.insert(seq);
    accept_piece(std::make_shared<const LivePiece>(std::move(piece)), &p);
}

void LiveSwarm::publish(PieceRef piece)
{
    if (!window_)
        return;
    accept_piece(std::move(piece), nullptr);
}

void LiveSwarm::accept_piece(PieceRef piece, Peer *from)
{
    if (!window_->add(piece))
        return;
    const bool newest = window_->newest() == piece->sequence;
    if (newest) {
        wire::LiveHead h{piece->sequence, piece->timestamp_ms, sha256(piece->data), piece->signature};
        if (!head_ || h.sequence >= head_->sequence)
            head_ = std::move(h);
    }
    announce(*piece, from);
    verified_.erase(verified_.begin(), verified_.lower_bound(window_->floor()));
    deliver();
}

void LiveSwarm::announce(const LivePiece &piece, const Peer *except)
{
    const bool newest = window_->newest() == piece.sequence;
    std::string have = wire::encode_live_have({{piece.sequence, piece.sequence}});
    std::string head;
    if (newest)
        head = wire::encode_live_head(*head_);
    // The broadcaster tells every peer the piece exists (the head) but
    // offers it (the have) to live.source_copies peers in turn only: they
    // relay it to the rest, which ask the broadcaster only when a piece
    // they need next is nowhere else.
    std::vector<Peer *> offer;
    for (auto &[k, p] : peers_)
        if (&p != except && p.ext)
            offer.push_back(&p);
    if (source_ && !offer.empty()) {
        const std::size_t n = offer.size();
        const std::size_t copies = std::min<std::size_t>(n, static_cast<std::size_t>(ctx_.config->live.source_copies));
        std::vector<Peer *> chosen;
        for (std::size_t i = 0; i < copies; ++i)
            chosen.push_back(offer[(relay_turn_ + i) % n]);
        relay_turn_ += copies;
        for (Peer *p : offer)
            if (newest)
                send_live(*p, head);
        offer = std::move(chosen);
    } else if (newest) {
        for (Peer *p : offer)
            send_live(*p, head);
    }
    for (Peer *p : offer)
        if (!p->have.contains(piece.sequence))
            send_live(*p, have);
}

// ------------------------------------------------------------ chat

void LiveSwarm::send_chat(const ChatSigner &signer, std::string_view text)
{
    if (!ctx_.config->live.chat)
        throw_error(Errc::STATE, "live", "chat", "chat is off (live.chat = false)");
    wire::LiveChat c = signer.sign(id_, unix_ms(), text);
    const ChatVerdict v = chat_.add(c, id_, unix_ms());
    if (v != ChatVerdict::New)
        throw_errorf(Errc::INVAL, "live", "chat", "line refused: {}", to_string(v));
    relay_chat(c, nullptr);
}

int LiveSwarm::listen_chat(ChatListener fn)
{
    return chat_listeners_.add(std::move(fn));
}

void LiveSwarm::unlisten_chat(int id)
{
    chat_listeners_.remove(id);
}

void LiveSwarm::on_chat(Peer &p, const wire::LiveChat &c)
{
    if (!ctx_.config->live.chat)
        return;
    const ChatVerdict v = chat_.add(c, id_, unix_ms());
    if (v == ChatVerdict::BadSignature) {
        ban(p, "chat line with a bad signature");
        return;
    }
    if (v != ChatVerdict::New) {
        ++chat_refused_; // dropped: duplicate, too old, too long or over the rate
        return;
    }
    relay_chat(c, &p);
}

void LiveSwarm::relay_chat(const wire::LiveChat &c, const Peer *except)
{
    const std::string payload = wire::encode_live_chat(c);
    for (auto &[k, p] : peers_)
        if (&p != except && p.ext)
            send_live(p, payload);
    chat_listeners_.call(c);
}

// ------------------------------------------------------------ viewer

int LiveSwarm::subscribe(Subscriber fn)
{
    return subscribers_.add(std::move(fn));
}

void LiveSwarm::unsubscribe(int id)
{
    subscribers_.remove(id);
}

void LiveSwarm::try_join(clock::time_point now)
{
    if (position_ || subscribers_.empty() || !head_ || !window_)
        return;
    const double piece = descriptor_->piece_duration;
    const auto behind = static_cast<std::uint64_t>(std::llround(ctx_.config->live.join_delay / piece));
    std::uint64_t start = head_->sequence > behind ? head_->sequence - behind : 0;
    start = std::max(start, window_->floor());
    if (source_) { // a player of this engine's own broadcast: from the window, at once
        position_ = std::max(start, window_->oldest().value_or(start));
        waiting_since_ = now;
        deliver();
        return;
    }
    // Wait briefly for heads from several peers (the newest one wins, and
    // their haves spread the first requests beyond the broadcaster).
    if (head_senders_.size() < 3 && now - first_head_ < kJoinWait)
        return;
    // Not before the first piece any peer offers (a young broadcast).
    auto offered = [&](std::uint64_t seq) {
        return std::any_of(peers_.begin(), peers_.end(), [&](const auto &e) { return e.second.have.contains(seq); });
    };
    while (start < head_->sequence && !offered(start))
        ++start;
    position_ = start;
    waiting_since_ = now;
    log_.info("live {}: joining at {} (newest head {}, {} peers)", name_, start, head_->sequence, peers_.size());
    deliver();
}

void LiveSwarm::deliver()
{
    if (!position_ || subscribers_.empty())
        return;
    // Stale position (fell out of the window): jump to the oldest held.
    if (*position_ < window_->floor()) {
        position_ = window_->floor();
        skipped_before_ = true;
    }
    while (true) {
        PieceRef piece = window_->get(*position_);
        if (!piece)
            break;
        const bool disc = skipped_before_;
        skipped_before_ = false;
        ++*position_;
        waiting_since_ = clock::now();
        subscribers_.call(piece, disc);
        if (subscribers_.empty())
            return;
    }
}

void LiveSwarm::check_skip(clock::time_point now)
{
    if (!position_ || !head_ || window_->has(*position_))
        return;
    // Skip only what a later held piece can replace, and only once the
    // position is far behind the live edge.
    auto newest = window_->newest();
    if (!newest || *newest <= *position_)
        return;
    const double piece = descriptor_->piece_duration;
    const double behind_s = static_cast<double>(head_->sequence - *position_) * piece;
    const double waited_s = std::chrono::duration<double>(now - waiting_since_).count();
    if (behind_s <= ctx_.config->live.join_delay + ctx_.config->live.skip_after &&
        waited_s <= ctx_.config->live.skip_after)
        return;
    std::uint64_t next = *position_ + 1;
    while (next < *newest && !window_->has(next))
        ++next;
    skipped_ += next - *position_;
    log_.info("live {}: skipped pieces {}..{} (missing {:.1f} s)", name_, *position_, next - 1, waited_s);
    for (std::uint64_t s = *position_; s < next; ++s)
        outstanding_.erase(s);
    position_ = next;
    skipped_before_ = true;
    deliver();
}

bool LiveSwarm::request(Peer &p, std::uint64_t seq, clock::time_point now)
{
    if (p.asked.size() >= kAskPerPeer || p.asked.count(seq))
        return false;
    p.asked[seq] = now;
    outstanding_[seq].push_back({p.c->state.key, now});
    send_live(p, wire::encode_live_request(seq));
    return true;
}

void LiveSwarm::pick(clock::time_point now)
{
    if (!position_ || !head_)
        return;
    const double piece_s = descriptor_->piece_duration;
    const auto late_first = std::chrono::duration_cast<clock::duration>(
        std::chrono::duration<double>(std::max(0.5, piece_s)));
    const auto late_other = std::chrono::duration_cast<clock::duration>(
        std::chrono::duration<double>(1.0 + 2 * piece_s));
    // Expire refusals.
    for (auto &[k, p] : peers_)
        std::erase_if(p.refused, [&](const auto &e) { return now - e.second > kRefusedFor; });

    std::size_t total = 0;
    for (auto &[seq, v] : outstanding_)
        total += v.size();

    // Candidates: the peers that hold `seq` and can take a request, the
    // broadcaster last, shortest queue first.
    auto best_peer = [&](std::uint64_t seq, const std::vector<Outstanding> *already) -> Peer * {
        Peer *best = nullptr;
        for (auto &[k, p] : peers_) {
            if (!p.ext || !p.have.contains(seq) || p.refused.count(seq) || p.asked.size() >= kAskPerPeer)
                continue;
            if (already && std::any_of(already->begin(), already->end(),
                                       [&](const Outstanding &o) { return o.peer == k; }))
                continue;
            if (!best || std::pair(p.is_source, p.asked.size()) < std::pair(best->is_source, best->asked.size()))
                best = &p;
        }
        return best;
    };

    const std::uint64_t first = *position_;
    const std::uint64_t last = head_->sequence;
    // 1. The next pieces in order; a late one goes to a second peer.
    for (std::uint64_t seq = first; seq <= last && seq < first + kInOrder; ++seq) {
        if (window_->has(seq))
            continue;
        auto it = outstanding_.find(seq);
        if (it != outstanding_.end()) {
            const auto oldest = std::min_element(it->second.begin(), it->second.end(),
                                                 [](auto &a, auto &b) { return a.sent < b.sent; });
            if (it->second.size() >= 2 || now - oldest->sent < late_first)
                continue;
        }
        Peer *p = best_peer(seq, it == outstanding_.end() ? nullptr : &it->second);
        if (!p && it == outstanding_.end() && now - known_since(seq, now) >= late_first)
            p = source_fallback(seq);
        if (p)
            total += request(*p, seq, now);
    }
    if (total >= kMaxOutstanding)
        return;
    // 2. Spare capacity: the rest up to the newest head, rarest first
    //    (ties: earliest first); late requests retried elsewhere.
    std::vector<std::pair<int, std::uint64_t>> wanted;
    for (std::uint64_t seq = first + kInOrder; seq <= last && wanted.size() < 64; ++seq) {
        if (window_->has(seq))
            continue;
        auto it = outstanding_.find(seq);
        if (it != outstanding_.end()) {
            const auto oldest = std::min_element(it->second.begin(), it->second.end(),
                                                 [](auto &a, auto &b) { return a.sent < b.sent; });
            if (it->second.size() >= 2 || now - oldest->sent < late_other)
                continue;
        }
        int holders = 0;
        for (auto &[k, p] : peers_)
            holders += p.have.contains(seq) ? 1 : 0;
        if (holders > 0)
            wanted.emplace_back(holders, seq);
    }
    std::sort(wanted.begin(), wanted.end());
    for (auto [holders, seq] : wanted) {
        if (total >= kMaxOutstanding)
            break;
        auto it = outstanding_.find(seq);
        if (Peer *p = best_peer(seq, it == outstanding_.end() ? nullptr : &it->second))
            total += request(*p, seq, now);
    }
}

bool LiveSwarm::is_verified(std::uint64_t seq, std::int64_t ts, const std::array<std::uint8_t, 32> &hash,
                            const std::string &signature) const
{
    auto it = verified_.find(seq);
    return it != verified_.end() && it->second.timestamp_ms == ts && it->second.data_sha256 == hash &&
           it->second.signature == signature;
}

void LiveSwarm::remember_verified(std::uint64_t seq, std::int64_t ts, const std::array<std::uint8_t, 32> &hash,
                                  const std::string &signature)
{
    if (window_ && seq < window_->floor())
        return;
    verified_[seq] = wire::LiveHead{seq, ts, hash, signature};
}

LiveSwarm::clock::time_point LiveSwarm::known_since(std::uint64_t seq, clock::time_point now)
{
    // Heads name the newest piece; an older one has been known at least
    // since the first head at or above it.
    auto it = known_since_.lower_bound(seq);
    return it == known_since_.end() ? now : it->second;
}

LiveSwarm::Peer *LiveSwarm::source_fallback(std::uint64_t seq)
{
    for (auto &[k, p] : peers_)
        if (p.is_source && p.ext && p.head && *p.head >= seq && !p.refused.count(seq) && p.asked.size() < kAskPerPeer)
            return &p;
    return nullptr;
}

double LiveSwarm::buffer_seconds() const
{
    if (!position_ || !window_ || !descriptor_)
        return 0;
    std::uint64_t s = *position_;
    while (window_->has(s))
        ++s;
    return static_cast<double>(s - *position_) * descriptor_->piece_duration;
}

// ------------------------------------------------------------ timers

void LiveSwarm::on_tick(uv_timer_t *t)
{
    static_cast<LiveSwarm *>(t->data)->tick();
}

void LiveSwarm::on_fast_tick(uv_timer_t *t)
{
    static_cast<LiveSwarm *>(t->data)->fast_tick();
}

void LiveSwarm::tick()
{
    const auto now = clock::now();
    auto smooth = [](double old, double sample) { return old * 0.6 + sample * 0.4; };
    down_rate_ = smooth(down_rate_, static_cast<double>(downloaded_ - down_mark_));
    up_rate_ = smooth(up_rate_, static_cast<double>(uploaded_ - up_mark_));
    down_mark_ = downloaded_;
    up_mark_ = uploaded_;

    std::vector<PeerConnection *> all;
    for (auto &[k, p] : peers_)
        all.push_back(p.c);
    for (PeerConnection *c : all) {
        if (now - c->last_received() > ctx_.idle_timeout) {
            c->close("idle");
            continue;
        }
        if (now - c->last_sent() > kKeepAlive) {
            wire::Message ka;
            ka.type = wire::MsgType::KeepAlive;
            c->send(ka);
        }
    }
    std::vector<PeerConnection *> stuck;
    for (PeerConnection *c : connecting_)
        if (now - c->created() > kConnectTimeout)
            stuck.push_back(c);
    for (PeerConnection *c : stuck)
        c->close("no handshake within 10 s");
    // Forget what peers hold below the window.
    if (window_)
        for (auto &[k, p] : peers_)
            p.have.erase_below(window_->floor());

    if (ctx_.config->transport.pex && now - last_pex_ > kPexInterval) {
        last_pex_ = now;
        send_pex();
    }
    // Ask another peer for the descriptor when the first did not answer
    // (a peer that offers pieces has it, whatever its handshake said).
    if (!descriptor_)
        for (auto &[k, p] : peers_)
            if (p.ext && !p.desc_asked && (p.c->state.ext.live_desc_size > 0 || !p.have.empty())) {
                p.desc_asked = true;
                send_live(p, wire::encode_live_desc_request());
                break;
            }
    candidates_.connect_more(now, peers_.size(), connecting_, id_, this);
    if (announcer_ && peers_.size() < 5)
        announcer_->announce_now();
}

void LiveSwarm::fast_tick()
{
    const auto now = clock::now();
    // Held-back uploads (rate limit, full sockets): peers nearest the live
    // edge first.
    std::vector<Peer *> waiting;
    for (auto &[k, p] : peers_)
        if (!p.uploads.empty())
            waiting.push_back(&p);
    std::sort(waiting.begin(), waiting.end(), [](const Peer *a, const Peer *b) { return a->head > b->head; });
    for (Peer *p : waiting)
        serve_uploads(*p);
    if (!window_)
        return;
    try_join(now);
    if (source_)
        return; // the broadcaster's own players read its window; it requests nothing
    if (position_)
        known_since_.erase(known_since_.begin(), known_since_.lower_bound(*position_));
    pick(now);
    check_skip(now);
}

void LiveSwarm::send_pex()
{
    std::set<PeerAddress> current;
    for (auto &[k, p] : peers_)
        if (p.c->outgoing() || (p.c->state.got_ext && p.c->state.ext.listen_port))
            current.insert(transport::listen_address(*p.c));
    wire::PexMsg diff = transport::pex_update(pex_last_, current);
    if (diff.added.empty() && diff.dropped.empty())
        return;
    for (auto &[k, p] : peers_) {
        if (p.pex_id <= 0)
            continue;
        wire::PexMsg m = diff;
        std::erase(m.added, transport::listen_address(*p.c));
        p.c->send_extended(static_cast<std::uint8_t>(p.pex_id), wire::encode_pex(m));
    }
}

// ------------------------------------------------------------ status

std::size_t LiveSwarm::memory_bytes() const
{
    std::size_t n = sizeof(*this) + (window_ ? window_->bytes() : 0);
    for (auto &[k, p] : peers_)
        n += sizeof(Peer) + p.c->memory_bytes();
    return n;
}

nlohmann::json LiveSwarm::status() const
{
    nlohmann::json peers = nlohmann::json::array();
    for (auto &[k, p] : peers_)
        peers.push_back({{"address", p.c->address().to_string()},
                         {"tls", p.c->is_tls()},
                         {"source", p.is_source},
                         {"bytes_from", p.bytes_from},
                         {"asked", p.asked.size()},
                         {"uploads_queued", p.uploads.size()}});
    nlohmann::json j = {{"content_id", to_hex(id_)},
                        {"source", source_},
                        {"peers", peers_.size()},
                        {"downloaded", downloaded_},
                        {"uploaded", uploaded_},
                        {"from_source", from_source_},
                        {"download_rate", std::round(down_rate_)},
                        {"upload_rate", std::round(up_rate_)},
                        {"skipped", skipped_},
                        {"rejected", rejected_},
                        {"duplicates", duplicates_},
                        {"chat_lines", chat_.size()},
                        {"chat_refused", chat_refused_},
                        {"bans", bans_},
                        {"newest", nullptr},
                        {"position", nullptr},
                        {"window_pieces", window_ ? window_->size() : 0},
                        {"window_bytes", window_ ? window_->bytes() : 0},
                        {"peer_list", std::move(peers)}};
    if (auto n = newest())
        j["newest"] = *n;
    if (position_)
        j["position"] = *position_;
    if (head_)
        j["head"] = head_->sequence;
    if (announcer_)
        j["trackers"] = announcer_->status();
    return j;
}

} // namespace openace::live
