#include "net/file_writer.hpp"

#include "core/error.hpp"
#include "net/uv_handle.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace openace::net {

struct FileWriter::State {
    uv_loop_t *loop = nullptr;
    std::string path;
    int fd = -1;
    bool owned = false, busy = false, failed = false, alive = true;
    std::deque<std::string> queue;
    std::size_t queued = 0, offset = 0; // offset: bytes of queue.front() written
    std::uint64_t written = 0;
    FileWriter *owner = nullptr;
    ~State()
    {
        if (owned && fd >= 0)
            ::close(fd);
    }
};

FileWriter::FileWriter(uv_loop_t *loop, const std::string &path, const char *component)
    : st_(std::make_shared<State>())
{
    st_->loop = loop;
    st_->path = path;
    st_->owner = this;
    if (path == "-") {
        st_->fd = 1;
        return;
    }
    st_->fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (st_->fd < 0)
        throw_errorf(Errc::IO, component, "output", "cannot write '{}': {}", path, std::strerror(errno));
    st_->owned = true;
}

FileWriter::~FileWriter()
{
    // A write in flight still reads queue.front(): the state (and the fd)
    // go when its callback drops the last reference.
    st_->alive = false;
    st_->owner = nullptr;

}

void FileWriter::retry_later()
{
    if (!retry_)
        retry_.init(this, uv_timer_init, st_->loop);
    uv_timer_start(retry_.get(), [](uv_timer_t *t) { static_cast<FileWriter *>(t->data)->next(); }, 5, 0);
}

std::size_t FileWriter::queued() const noexcept
{
    return st_->queued;
}

std::uint64_t FileWriter::written() const noexcept
{
    return st_->written;
}

void FileWriter::write(std::string data)
{
    if (st_->failed || data.empty())
        return;
    st_->queued += data.size();
    st_->queue.push_back(std::move(data));
    next();
}

void FileWriter::next()
{
    State &s = *st_;
    if (s.busy || s.queue.empty() || s.failed)
        return;
    struct Req {
        uv_fs_t fs{};
        std::shared_ptr<State> st;
    };
    auto *r = new Req;
    r->st = st_;
    r->fs.data = r;
    std::string &front = s.queue.front();
    const std::size_t len = std::min<std::size_t>(front.size() - s.offset, 1u << 30);
    uv_buf_t buf = uv_buf_init(front.data() + s.offset, static_cast<unsigned>(len));
    s.busy = true;
    int rc = uv_fs_write(s.loop, &r->fs, s.fd, &buf, 1, -1, [](uv_fs_t *fs) {
        auto *req = static_cast<Req *>(fs->data);
        const auto result = fs->result;
        uv_fs_req_cleanup(fs);
        std::shared_ptr<State> st = std::move(req->st);
        delete req;
        st->busy = false;
        if (!st->alive)
            return;
        if (result == UV_EAGAIN) {
            st->owner->retry_later(); // a full non-blocking pipe
            return;
        }
        if (result < 0) {
            st->failed = true;
            st->queue.clear();
            st->queued = 0;
            if (st->owner && st->owner->on_error)
                st->owner->on_error(st->path + ": " + uv_strerror(static_cast<int>(result)));
            return;
        }
        const auto n = static_cast<std::size_t>(result);
        st->written += n;
        st->queued -= n;
        st->offset += n;
        if (st->offset >= st->queue.front().size()) {
            st->queue.pop_front();
            st->offset = 0;
        }
        if (st->owner)
            st->owner->next();
    });
    if (rc < 0) {
        delete r;
        s.busy = false;
        s.failed = true;
        if (on_error)
            on_error(s.path + ": " + uv_strerror(rc));
    }
}

} // namespace openace::net
