// Signed live pieces (DESIGN §2, LiveEngine).
//
// Every chunk the broadcaster's segmenter produces becomes a live piece: a
// 64-bit sequence number, the broadcaster's wall-clock timestamp, the
// MPEG-TS data and an ECDSA P-256 signature.  What is signed is
//
//   SHA-256( content id (20 bytes) || sequence (u64 big-endian)
//            || timestamp_ms (i64 big-endian) || SHA-256(data) (32 bytes) )
//
// so a piece cannot be moved to another broadcast, renumbered, re-dated or
// altered.  Viewers and relays verify every piece before storing, relaying
// or playing it: the signature, the sequence number inside the window around
// the newest piece, and the timestamp inside the time window around now
// (replay protection: an old, validly signed piece is refused).
//
// Threads: LiveSigner::sign and LiveVerifier::verify may be called from any
// thread, also concurrently on one object (each holds a mutex around its
// mbedTLS context, whose curve tables are filled in lazily).  Both are
// movable, not copyable; a moved-from object may only be destroyed or
// assigned to.
// Errors: constructors throw openace::Error(INVAL, "live", "key", ...);
// verify never throws; encode_piece/decode_piece throw
// openace::Error(PROTO, "live", "piece", ...).
#pragma once

#include "live/live_descriptor.hpp"

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace openace::live {

inline constexpr std::size_t kMaxPieceData = 8u * 1024 * 1024;
inline constexpr std::size_t kMaxSignature = 80; // a DER ECDSA P-256 signature is at most 72

struct LivePiece {
    std::uint64_t sequence = 0;
    std::int64_t timestamp_ms = 0; // broadcaster's wall clock, unix ms
    std::string data;              // the MPEG-TS chunk
    std::string signature;         // DER ECDSA signature (filled by LiveSigner::sign)
};

// The broadcaster's side.
class LiveSigner {
public:
    // key_pem: the broadcaster's ECDSA P-256 private key (PEM, as
    // transport::Identity::key_pem); id: the broadcast's content id.  Throws
    // Error(INVAL, "live", "key", ...) when the key is unreadable or not P-256,
    // or when no random generator can be seeded.
    LiveSigner(const std::string &key_pem, const ContentId &id);
    ~LiveSigner();
    LiveSigner(LiveSigner &&) noexcept;
    LiveSigner &operator=(LiveSigner &&) noexcept;

    // Fills piece.signature over the piece's sequence, timestamp and data.
    // Throws Error(INTERNAL, "live", "sign", ...) only if mbedTLS fails.
    void sign(LivePiece &piece) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

enum class Verdict {
    Ok,
    BadSignature,  // not signed by the descriptor's key for this content id
    OutsideWindow, // sequence too far from newest, or timestamp too far in the future
    TooOld,        // timestamp older than now - window (a replay)
    Malformed,     // empty or over-long signature, data over the limit
};
// "ok", "bad signature", "outside window", "too old", "malformed".
const char *to_string(Verdict v) noexcept;

// Every viewer's and relay's side.
class LiveVerifier {
public:
    // Takes the public key and content id from the descriptor (not retained).
    // Throws Error(INVAL, "live", "key", ...) when the key is not an ECDSA
    // P-256 SubjectPublicKeyInfo.
    explicit LiveVerifier(const LiveDescriptor &d);
    ~LiveVerifier();
    LiveVerifier(LiveVerifier &&) noexcept;
    LiveVerifier &operator=(LiveVerifier &&) noexcept;

    const ContentId &content_id() const noexcept;

    // newest: the newest verified sequence so far (pass p.sequence itself
    // when nothing has been verified yet); window_pieces: how far behind or
    // ahead of newest a sequence may be; a timestamp older than
    // now_ms - window_ms is TooOld, one later than now_ms + window_ms is
    // OutsideWindow.  The cheap checks run first, so a forged piece outside
    // the window is reported as such, not as BadSignature: only Ok says
    // anything about authenticity.  Negative windows count as 0.
    Verdict verify(const LivePiece &p, std::uint64_t newest, std::uint64_t window_pieces, std::int64_t now_ms,
                   std::int64_t window_ms) const;
    // The same checks for a signed head, which carries SHA-256(data) instead
    // of the data (docs/protocol.md §3).
    Verdict verify_head(std::uint64_t sequence, std::int64_t timestamp_ms, const std::array<std::uint8_t, 32> &data_sha256,
                        std::string_view signature, std::uint64_t newest, std::uint64_t window_pieces,
                        std::int64_t now_ms, std::int64_t window_ms) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Wire form (the oa_live piece message body): u64 sequence, i64 timestamp_ms
// (both big-endian), u16 signature length, signature, data (the rest).
// Both throw Error(PROTO, "live", "piece", ...) for a signature empty or over
// 80 bytes or data over 8 MiB; decode_piece also for input shorter than its
// header and signature.
std::string encode_piece(const LivePiece &p);
LivePiece decode_piece(std::string_view bytes);

} // namespace openace::live
