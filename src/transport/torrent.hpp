// One torrent's swarm session (DESIGN §5): its peers, metadata exchange
// (BEP 9), PEX (BEP 11), the picker, verified storage, choking, trackers and
// the streaming readers that play and seed jobs read through.
//
// Loop thread only.  Destroying a Torrent closes its connections without
// calling anyone back; stop() first says goodbye to the trackers.
#pragma once

#include "transport/candidates.hpp"
#include "transport/metainfo.hpp"
#include "transport/peer_connection.hpp"
#include "transport/picker.hpp"
#include "transport/storage.hpp"
#include "transport/transport_context.hpp"

#include <nlohmann/json.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace openace::net {
template <class T> class UvHandle;
}

namespace openace::transport {

class Announcer;

class Torrent : public PeerHandler {
public:
    using clock = std::chrono::steady_clock;

    // A torrent known by its infohash; metadata comes from set_metadata()
    // or from peers (BEP 9).
    Torrent(TransportContext &ctx, const InfoHash &info_hash, std::string name_hint = {});
    ~Torrent() override;
    Torrent(const Torrent &) = delete;
    Torrent &operator=(const Torrent &) = delete;

    // Known metadata.  `storage` null: pieces go to the disk cache (play);
    // otherwise e.g. the user's files (seed), whose pieces are all present
    // when `have_all`.
    void set_metadata(Metainfo m, std::unique_ptr<Storage> storage = nullptr, bool have_all = false);
    void add_trackers(const std::vector<std::string> &urls);
    // Addresses to connect to.  `explicit_peer`: given by the user
    // (--peer, x.pe): retried for as long as the torrent lives.
    void add_peers(const std::vector<PeerAddress> &peers, bool explicit_peer = false);
    void start();
    // Tells the trackers we leave, closes every connection; done runs once.
    void stop(std::function<void()> done);

    // An incoming connection whose handshake named this torrent.
    void attach(PeerConnection *c);

    // Only this byte range of the piece space is downloaded (a chosen file).
    void set_wanted(std::int64_t begin, std::int64_t end);

    std::function<void()> on_metadata;                     // metadata became known (once)
    std::function<void(const std::string &error)> on_error; // storage failed: the job ends

    // Streaming readers over [begin, end) of the piece space.  read()
    // delivers up to `max` bytes at the reader's position as soon as they
    // are verified and advances it; one read at a time per reader.  The
    // picker keeps a deadline window of streaming.buffer_size seconds of
    // media ahead of each reader; seek() moves it.
    int open_reader(std::int64_t begin, std::int64_t end);
    void seek(int reader, std::int64_t position);
    void read(int reader, std::size_t max, std::function<void(std::string data, const std::string &error)> cb);
    void close_reader(int reader);
    // Bytes verified contiguously from the reader's position (its buffer).
    std::int64_t reader_buffered(int reader) const;

    const InfoHash &info_hash() const noexcept { return info_hash_; }
    bool has_metadata() const noexcept { return meta_.has_value(); }
    const Metainfo &metainfo() const { return *meta_; }
    bool seeding() const noexcept { return seeding_; }
    // Every wanted piece verified.
    bool complete() const;
    std::size_t peer_count() const noexcept { return peers_.size(); }
    std::uint64_t downloaded() const noexcept { return downloaded_; }
    std::uint64_t uploaded() const noexcept { return uploaded_; }
    double download_rate() const noexcept { return down_rate_; }
    double upload_rate() const noexcept { return up_rate_; }
    std::size_t memory_bytes() const;
    nlohmann::json status() const;

    // PeerHandler
    void on_handshake(PeerConnection &c) override;
    void on_message(PeerConnection &c, const wire::Message &m) override;
    void on_writable(PeerConnection &c) override;
    void on_closed(PeerConnection &c, const std::string &reason, bool before_handshake) override;

private:
    struct Reader {
        std::int64_t begin = 0, end = 0, position = 0;
        std::size_t want = 0;
        std::function<void(std::string, const std::string &)> cb;
        bool reading = false; // a storage read is in flight
        double rate = 0;      // bytes/s consumed, smoothed
        std::int64_t consumed_mark = 0, consumed = 0;
    };
    struct Upload {
        std::uint32_t piece, begin, length;
    };

    static void on_tick(uv_timer_t *t);
    static void on_fast_tick(uv_timer_t *t);
    void tick();      // 1 s: rates, choking, connections, timeouts, PEX, metadata requests
    void fast_tick(); // 100 ms: late re-requests, rate-limit resumes, readers
    void connect_more(clock::time_point now);
    void choke_round(bool rotate_optimistic);
    void set_choke(PeerConnection &c, bool choke);
    // Recomputes our interest in the peer (a scan of the wanted pieces).
    void set_interest(PeerConnection &c);
    void send_interest(PeerConnection &c, bool want);
    bool peer_has_wanted(const PeerConnection &c) const;
    void fill_requests(PeerConnection &c);
    void fill_all_requests();
    void serve_uploads(PeerConnection &c);

    void send_ext_handshake(PeerConnection &c);
    void on_extended(PeerConnection &c, const wire::Message &m);
    void on_metadata_msg(PeerConnection &c, std::string_view payload);
    void request_metadata(clock::time_point now);
    void metadata_complete();
    void send_pex();

    void on_bitfield_known(PeerConnection &c);
    void on_piece(PeerConnection &c, const wire::Message &m);
    void piece_verified(std::uint32_t piece, bool ok, const std::string &error);
    void ban(PeerConnection &c, const std::string &why);
    void ban_key(std::uint64_t key, const std::string &why);
    // Drops what we know of a gone peer unless a pending check may need it.
    void forget_sender(std::uint64_t key);
    void serve_readers();
    void update_reader_windows(clock::time_point now);
    void deliver(Reader &r, int id);

    std::uint32_t piece_of(std::int64_t offset) const;
    PeerConnection *find(std::uint64_t key) const;

    TransportContext &ctx_;
    core::Logger log_;
    InfoHash info_hash_;
    std::string name_;
    std::optional<Metainfo> meta_;
    std::unique_ptr<Storage> storage_;
    std::unique_ptr<Picker> picker_;
    std::unique_ptr<Announcer> announcer_;
    std::vector<std::string> trackers_;
    bool seeding_ = false, started_ = false, stopping_ = false;
    std::int64_t wanted_begin_ = 0, wanted_end_ = -1;

    std::map<std::uint64_t, PeerConnection *> peers_; // by key; handshake done
    std::set<PeerConnection *> connecting_;           // outgoing, before the handshake
    Candidates candidates_{ctx_};
    std::map<std::uint64_t, std::vector<Upload>> uploads_;
    std::uint64_t next_key_ = 1;

    // Blocks of pieces being downloaded, and who sent each block.
    std::map<std::uint32_t, std::string> partial_;
    std::map<std::uint32_t, std::vector<std::uint64_t>> block_senders_;
    std::set<std::uint32_t> verifying_;
    // Bad data: a piece several peers sent that failed its check is kept
    // until the piece verifies; then the senders of differing blocks are banned.
    struct Suspect {
        std::string data;
        std::vector<std::uint64_t> senders;
    };
    std::map<std::uint32_t, std::string> copies_; // multi-sender pieces being verified
    std::map<std::uint32_t, Suspect> suspects_;
    std::map<std::uint64_t, std::pair<PeerId, PeerAddress>> known_senders_;

    // BEP 9
    std::int64_t metadata_size_ = -1;
    std::vector<std::string> meta_pieces_;
    std::vector<clock::time_point> meta_requested_;

    // BEP 11
    std::set<PeerAddress> pex_last_;
    clock::time_point last_pex_{};

    // Choking
    std::uint64_t optimistic_ = 0;
    int choke_rounds_ = 0;
    static constexpr int kUploadSlots = 4;

    std::map<int, Reader> readers_;
    int next_reader_ = 1;

    std::uint64_t downloaded_ = 0, uploaded_ = 0, down_mark_ = 0, up_mark_ = 0, wasted_ = 0;
    std::uint64_t from_openace_ = 0;
    double down_rate_ = 0, up_rate_ = 0;
    std::uint64_t hash_failures_ = 0, bans_ = 0;
    int ticks_ = 0;

    uv_timer_t *tick_timer_ = nullptr;
    uv_timer_t *fast_timer_ = nullptr;
};

} // namespace openace::transport
