// One live broadcast's swarm session (docs/protocol.md): its peers, the
// oa_live extension, the sliding window of verified pieces, the live picker,
// uploads, trackers and PEX.  The broadcaster's session publishes signed
// pieces; a viewer's session resolves the descriptor from peers, joins
// behind the newest signed head and hands verified pieces, in order, to its
// subscribers (skipping a piece that stays missing: a discontinuity, never
// a stall that does not recover).
//
// Loop thread only.  Destroying a LiveSwarm closes its connections without
// calling anyone back; stop() first says goodbye to the trackers.
#pragma once

#include "live/live_chat.hpp"
#include "live/live_descriptor.hpp"
#include "live/live_piece.hpp"
#include "live/live_window.hpp"
#include "net/uv_handle.hpp"
#include "transport/candidates.hpp"
#include "transport/live_wire.hpp"
#include "transport/peer_connection.hpp"
#include "transport/transport_context.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace openace::transport {
class Announcer;
}

namespace openace::live {

// Callbacks registered under an id; call() reaches each one still
// registered when its turn comes (a callback may remove itself or others).
template <class Fn> class Callbacks {
public:
    int add(Fn fn)
    {
        fns_[next_] = std::move(fn);
        return next_++;
    }
    void remove(int id) { fns_.erase(id); }
    bool empty() const noexcept { return fns_.empty(); }
    template <class... A> void call(const A &...args)
    {
        auto copy = fns_;
        for (auto &[id, fn] : copy)
            if (fns_.count(id))
                fn(args...);
    }

private:
    std::map<int, Fn> fns_;
    int next_ = 1;
};

class LiveSwarm : public transport::PeerHandler {
public:
    using clock = std::chrono::steady_clock;
    using PieceRef = std::shared_ptr<const LivePiece>;

    LiveSwarm(transport::TransportContext &ctx, core::Logger log, const ContentId &id);
    ~LiveSwarm() override;
    LiveSwarm(const LiveSwarm &) = delete;
    LiveSwarm &operator=(const LiveSwarm &) = delete;

    // The descriptor (bencoded).  Returns false, changing nothing, when its
    // SHA-1 is not the content id or it does not parse.  A viewer gets it
    // from a file or from peers (desc request).
    bool set_descriptor(const std::string &encoded);
    bool has_descriptor() const noexcept { return descriptor_.has_value(); }
    const LiveDescriptor &descriptor() const { return *descriptor_; }

    // Broadcaster: this session is the source.  Every published piece must
    // be signed with the descriptor's key; it is stored and announced.
    void set_source() { source_ = true; }
    void publish(PieceRef piece);

    void add_trackers(const std::vector<std::string> &urls);
    void add_peers(const std::vector<transport::PeerAddress> &peers, bool explicit_peer = false);
    void start();
    void stop(std::function<void()> done);
    // An incoming connection whose handshake named this content id.
    void attach(transport::PeerConnection *c);

    // Viewers: the in-order stream.  A subscriber gets every verified piece
    // from the play position on, in sequence order; `discontinuity` is set
    // when pieces before it were skipped.  The first subscriber starts the
    // join (position = newest head - live.join_delay).
    using Subscriber = std::function<void(const PieceRef &, bool discontinuity)>;
    int subscribe(Subscriber fn);
    void unsubscribe(int id);


    // Chat (docs/protocol.md §3): sends a line signed by `signer` to every
    // peer; throws Error(INVAL, "live", "chat", ...) for bad text and
    // Error(STATE) when live.chat is off.  Lines from peers that ChatLog
    // accepts are relayed and handed to every chat listener.
    void send_chat(const ChatSigner &signer, std::string_view text);
    using ChatListener = std::function<void(const transport::wire::LiveChat &)>;
    int listen_chat(ChatListener fn);
    void unlisten_chat(int id);
    const ChatLog &chat_log() const noexcept { return chat_; }

    const ContentId &content_id() const noexcept { return id_; }
    std::size_t peer_count() const noexcept { return peers_.size(); }
    std::optional<std::uint64_t> newest() const;
    // A verified piece still in the window (null when not held), and the
    // oldest one held.
    PieceRef piece(std::uint64_t seq) const;
    std::optional<std::uint64_t> oldest() const;
    std::optional<std::uint64_t> position() const noexcept { return position_; }
    std::uint64_t uploaded() const noexcept { return uploaded_; }
    std::uint64_t downloaded() const noexcept { return downloaded_; }
    std::uint64_t from_source() const noexcept { return from_source_; }
    std::uint64_t skipped() const noexcept { return skipped_; }
    // Pieces that came twice (asked again when late; the first copy won).
    std::uint64_t duplicates() const noexcept { return duplicates_; }
    std::uint64_t bans() const noexcept { return bans_; }
    double download_rate() const noexcept { return down_rate_; }
    double upload_rate() const noexcept { return up_rate_; }
    // Seconds of media held from the play position on.
    double buffer_seconds() const;
    std::size_t memory_bytes() const;
    nlohmann::json status() const;

    // PeerHandler
    void on_handshake(transport::PeerConnection &c) override;
    void on_message(transport::PeerConnection &c, const transport::wire::Message &m) override;
    void on_writable(transport::PeerConnection &c) override;
    void on_closed(transport::PeerConnection &c, const std::string &reason, bool before_handshake) override;

private:
    struct Peer {
        transport::PeerConnection *c = nullptr;
        int live_id = 0, pex_id = 0; // the peer's extension ids (0: none)
        bool ext = false;            // its extension handshake arrived
        bool is_source = false;      // the broadcaster (peer id of the descriptor's key)
        std::uint64_t window = 1;
        std::optional<std::uint64_t> head; // newest verified head from it
        std::optional<transport::wire::LiveHead> pending_head; // came before the descriptor
        SeqRanges have{256};
        std::map<std::uint64_t, clock::time_point> asked;    // our requests to it
        std::map<std::uint64_t, clock::time_point> refused;  // its rejects (and late answers)
        std::deque<std::uint64_t> uploads;                   // its requests to us, in order
        std::uint64_t bytes_from = 0;
        bool desc_asked = false;
    };
    struct Outstanding {
        std::uint64_t peer = 0;
        clock::time_point sent{};
    };

    static void on_tick(uv_timer_t *t);
    static void on_fast_tick(uv_timer_t *t);
    void tick();      // 1 s: rates, connections, PEX, announces, idle peers
    void fast_tick(); // 50 ms: picker, late requests, skips

    Peer *find(std::uint64_t key);
    Peer *peer_of(transport::PeerConnection &c);
    void send_live(Peer &p, const std::string &payload);
    void send_ext_handshake(transport::PeerConnection &c);
    void on_extended(transport::PeerConnection &c, Peer &p, const transport::wire::Message &m);
    void on_live(Peer &p, const transport::wire::LiveMsg &m);
    void on_head(Peer &p, const transport::wire::LiveHead &h);
    void on_piece(Peer &p, LivePiece piece);
    void on_request(Peer &p, std::uint64_t seq);
    void serve_uploads(Peer &p);
    // Verified piece: stored, announced, delivered.
    void accept_piece(PieceRef piece, Peer *from);
    void announce(const LivePiece &piece, const Peer *except);
    void send_state(Peer &p); // our head and haves, after the handshake
    void ban(Peer &p, const std::string &why);
    void send_pex();
    void on_chat(Peer &p, const transport::wire::LiveChat &c);
    // To every peer but `except`, and to the chat listeners.
    void relay_chat(const transport::wire::LiveChat &c, const Peer *except);

    // Viewer side.
    void try_join(clock::time_point now);
    void pick(clock::time_point now);
    bool request(Peer &p, std::uint64_t seq, clock::time_point now);
    // The broadcaster, when it may be asked for `seq` (nobody else offers it).
    Peer *source_fallback(std::uint64_t seq);
    bool is_verified(std::uint64_t seq, std::int64_t ts, const std::array<std::uint8_t, 32> &hash,
                     const std::string &signature) const;
    void remember_verified(std::uint64_t seq, std::int64_t ts, const std::array<std::uint8_t, 32> &hash,
                           const std::string &signature);
    // When we first learned that `seq` exists (a head at or above it).
    clock::time_point known_since(std::uint64_t seq, clock::time_point now);
    void deliver();
    void check_skip(clock::time_point now);
    std::uint64_t window_pieces() const;
    std::int64_t window_ms() const;
    std::uint64_t newest_known() const; // for verification: newest verified piece or head

    transport::TransportContext &ctx_;
    core::Logger log_;
    ContentId id_;
    std::string name_; // short id for logs
    std::optional<LiveDescriptor> descriptor_;
    std::string descriptor_bytes_;
    std::unique_ptr<LiveVerifier> verifier_;
    std::unique_ptr<LiveWindow> window_;
    bool source_ = false, started_ = false, stopping_ = false;

    transport::Candidates candidates_;
    std::unique_ptr<transport::Announcer> announcer_;
    std::vector<std::string> trackers_;
    std::map<std::uint64_t, Peer> peers_; // by key
    std::set<transport::PeerConnection *> connecting_;
    std::uint64_t next_key_ = 1;
    std::set<transport::PeerAddress> pex_last_;
    clock::time_point last_pex_{};

    // The newest verified head (ours or a peer's) and when heads came in.
    std::optional<transport::wire::LiveHead> head_;
    std::set<std::uint64_t> head_senders_;
    std::map<std::uint64_t, clock::time_point> known_since_; // new heads, from the play position on
    clock::time_point first_head_{};

    // Viewer: the play position (the next sequence to deliver).
    std::optional<std::uint64_t> position_;
    bool skipped_before_ = false; // the next delivered piece follows a skip
    Callbacks<Subscriber> subscribers_;
    std::map<std::uint64_t, std::vector<Outstanding>> outstanding_;
    clock::time_point waiting_since_{}; // the position's piece has been missing since

    ChatLog chat_;
    Callbacks<ChatListener> chat_listeners_;
    std::uint64_t chat_refused_ = 0;

    // Signed (sequence, timestamp, data hash, signature) already checked:
    // the same head from every neighbour, and the piece after its head,
    // need no second signature check.  Pruned below the window.
    std::map<std::uint64_t, transport::wire::LiveHead> verified_;
    std::uint64_t relay_turn_ = 0; // which peers get the next piece's have

    std::uint64_t downloaded_ = 0, uploaded_ = 0, from_source_ = 0, skipped_ = 0, bans_ = 0;
    std::uint64_t down_mark_ = 0, up_mark_ = 0, rejected_ = 0, duplicates_ = 0;
    double down_rate_ = 0, up_rate_ = 0;

    net::UvHandle<uv_timer_t> tick_timer_, fast_timer_;
};

} // namespace openace::live
