/* Where the connection table lives and how its entries are reclaimed (see
 * conntrack.h): its memory, in the process or in a shared file that a restarted
 * switch maps again; the reclaim of expired entries; the per-port limit. */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conntrack.h"

/* The shared file: this header, then the entries (page-aligned, so 64-byte
 * aligned). Only the entries and `bump` are shared; the index, the FIFOs and the
 * counts are the process's own, rebuilt from the entries on attach, so a switch
 * killed anywhere (even inside an insert) leaves nothing that needs repair: an entry
 * becomes live only when its state byte is written, and expiry is checked anew. */
#define CT_FILE_MAGIC "netsemct"
#define CT_FILE_VERSION 1u
#define CT_FILE_HEADER 4096u
struct ct_file {
    char magic[8];
    uint32_t version;
    uint32_t entry_size;
    uint32_t cap;
    uint32_t bump;           /* entries [bump, cap) never used: the rebuild stops there */
};

/* Everything but the entries' memory, which the caller has set in ct->e. */
static int ct_setup(struct ct_table *ct, uint32_t per_port, struct ns_events *ev)
{
    ct->ev = ev;
    ct->free_head = NS_NONE32;
    for (int c = 0; c < CT_TCLASS_COUNT; c++)
        ct->fifo[c].head = ct->fifo[c].tail = NS_NONE32;
    ct->per_port = per_port;
    if (ctx_init(&ct->idx, 2ull * ct->cap) != 0 ||
        (per_port && !(ct->port_count = calloc(CT_PORTS, sizeof(*ct->port_count))))) {
        ct_fini(ct);
        return -1;
    }
    return 0;
}

int ct_init(struct ct_table *ct, uint32_t cap, uint32_t per_port, struct ns_events *ev)
{
    memset(ct, 0, sizeof(*ct));
    if (cap == 0 || cap > (1u << 30))
        return -1;
    ct->cap = cap;
    /* aligned (64 bytes at least): an entry's first half (all a lookup reads) is one
     * cache line */
    ct->e = ns_table_alloc((uint64_t)cap * sizeof(*ct->e));
    if (!ct->e) {
        ct_fini(ct);
        return -1;
    }
    return ct_setup(ct, per_port, ev);
}

/* Takes a live entry of the file into the table: indexed both ways, queued, counted.
 * Its rules and generation named the previous process's tables: forgotten. */
static void ct_adopt(struct ct_table *ct, uint32_t i)
{
    struct ct_entry *e = &ct->e[i];
    struct ct_key rkey;
    ct_reply_key(e, &rkey);
    ctx_insert(&ct->idx, ct_key_hash(&e->key), (i << 1) + 1, e->nat != 0);
    ctx_insert(&ct->idx, ct_key_hash(&rkey), (i << 1 | 1) + 1, e->nat != 0);
    fifo_append(ct, i);
    e->egress_rule = e->ingress_rule = NS_RULE_NONE;
    e->generation = 0;
    ct->state_count[e->state]++;
    ct->n_used++;
    ct->n_xlated += e->nat != 0;
    if (ct->port_count)
        ct->port_count[e->in_port]++;
}

struct by_queue { uint64_t order; uint32_t i; };
static int cmp_queue(const void *a, const void *b)
{
    const struct by_queue *x = a, *y = b;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* The table from the file's entries: live ones adopted in their FIFO order (by
 * timeout class, then queued expiry), the rest freed. A key met twice (possible
 * only if a kill tore an insert) keeps its first entry. Returns entries kept. */
static int64_t ct_rebuild(struct ct_table *ct, uint64_t now)
{
    struct by_queue *q = malloc(((uint64_t)ct->bump + 1) * sizeof(*q));
    if (!q)
        return -1;
    uint32_t n = 0, now_ms = ms_stamp(now);
    for (uint32_t i = 0; i < ct->bump; i++) {
        const struct ct_entry *e = &ct->e[i];
        if (e->state != CT_FREE && e->state < CT_STATE_COUNT && e->tclass < CT_TCLASS_COUNT &&
            !(e->nat & ~(CT_NAT_DST | CT_NAT_SRC)) && e->expiry > now)
            q[n++] = (struct by_queue){(uint64_t)e->tclass << 32 | (uint32_t)(e->qexp_ms - now_ms + 0x80000000u), i};
        else
            ct->e[i].state = CT_FREE;
    }
    qsort(q, n, sizeof(*q), cmp_queue);
    int dir;
    for (uint32_t k = 0; k < n; k++) {
        struct ct_entry *e = &ct->e[q[k].i];
        struct ct_key rkey;
        ct_reply_key(e, &rkey);
        if (ct_find(ct, &e->key, now, &dir) != NS_NONE32 || ct_find(ct, &rkey, now, &dir) != NS_NONE32)
            e->state = CT_FREE;
        else
            ct_adopt(ct, q[k].i);
    }
    free(q);
    for (uint32_t i = ct->bump; i-- > 0;)
        if (ct->e[i].state == CT_FREE) {
            ct->e[i].next = ct->free_head;
            ct->free_head = i;
        }
    return ct->n_used;
}

int64_t ct_init_file(struct ct_table *ct, uint32_t cap, uint32_t per_port, struct ns_events *ev,
                     const char *path, int attach, uint64_t now)
{
    memset(ct, 0, sizeof(*ct));
    int fd = open(path, attach ? O_RDWR | O_CLOEXEC : O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    struct ct_file h;
    struct stat st;
    if (attach) {
        if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) || memcmp(h.magic, CT_FILE_MAGIC, 8) != 0 ||
            h.version != CT_FILE_VERSION || h.entry_size != sizeof(struct ct_entry) || h.cap == 0 ||
            h.cap > (1u << 30) || h.bump > h.cap || fstat(fd, &st) != 0 ||
            (uint64_t)st.st_size != CT_FILE_HEADER + (uint64_t)h.cap * sizeof(struct ct_entry)) {
            close(fd);
            return -EINVAL;   /* not a connection table of this version */
        }
        cap = h.cap;
    } else if (cap == 0 || cap > (1u << 30) ||
               ftruncate(fd, (off_t)(CT_FILE_HEADER + (uint64_t)cap * sizeof(struct ct_entry))) != 0) {
        int err = cap == 0 || cap > (1u << 30) ? EINVAL : errno;
        close(fd);
        return -err;
    }
    uint64_t bytes = CT_FILE_HEADER + (uint64_t)cap * sizeof(struct ct_entry);
    /* MAP_POPULATE: every page of the file exists and is mapped now, not faulted in
     * on the packet path (as ns_table_alloc touches the in-process table) */
    void *map = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return -errno;
    madvise(map, bytes, MADV_HUGEPAGE);   /* where tmpfs allows huge pages (shmem_enabled) */
    ct->file = map;
    ct->file_bytes = bytes;
    ct->cap = cap;
    ct->e = (struct ct_entry *)((char *)map + CT_FILE_HEADER);
    if (!attach) {
        memcpy(ct->file->magic, CT_FILE_MAGIC, 8);
        ct->file->version = CT_FILE_VERSION;
        ct->file->entry_size = sizeof(struct ct_entry);
        ct->file->cap = cap;
        ct->file->bump = 0;
    }
    if (ct_setup(ct, per_port, ev) != 0)
        return -ENOMEM;
    ct->bump = ct->file->bump;
    int64_t kept = attach ? ct_rebuild(ct, now) : 0;
    if (kept < 0) {
        ct_fini(ct);
        return -ENOMEM;
    }
    return kept;
}

void ct_note_bump(struct ct_table *ct)
{
    if (ct->file)
        ct->file->bump = ct->bump;
}

void ct_fini(struct ct_table *ct)
{
    if (ct->file)
        munmap(ct->file, ct->file_bytes);
    else
        free(ct->e);
    ct->file = NULL;
    free(ct->port_count);
    ct->port_count = NULL;
    ct->e = NULL;
    ctx_fini(&ct->idx);
}

uint64_t ct_bytes(const struct ct_table *ct)
{
    return (uint64_t)ct->cap * sizeof(struct ct_entry) + ctx_bytes(&ct->idx) +
           (ct->port_count ? CT_PORTS * sizeof(*ct->port_count) : 0);
}

uint32_t ct_reclaim(struct ct_table *ct, uint64_t now, uint32_t budget)
{
    uint32_t done = 0;
    int progress = 1;
    while (done < budget && progress) {
        progress = 0;
        for (int c = 0; c < CT_TCLASS_COUNT && done < budget; c++) {
            uint32_t h = ct->fifo[c].head;
            if (h != NS_NONE32 && ct->e[h].expiry <= now) {
                ct_report(ct, h, NS_EV_EXPIRED, now);
                ct_delete(ct, h);
                done++;
                progress = 1;
            }
        }
    }
    return done;
}

/* Frees up to `max` expired entries. Only entries whose queued stamp has passed
 * can have expired, and they are at the FIFO heads (those there not yet expired are
 * in their last CT_REQUEUE_MS, so the walk stays short). The stamps (ms mod 2^32)
 * compare right within 24.8 days; an entry queued longer ago than that (an idle
 * month, a clock that jumped) is judged by its expiry, or "full" would not mean
 * every entry is live (found by the libFuzzer harness, native/fuzz/regressions/). */
uint32_t ct_reclaim_expired(struct ct_table *ct, uint64_t now, uint32_t max)
{
    uint32_t now_ms = ms_stamp(now), done = 0;
    for (int c = 0; c < CT_TCLASS_COUNT && done < max; c++) {
        uint32_t i = ct->fifo[c].head;
        while (i != NS_NONE32 && done < max &&
               (ct->e[i].expiry <= now || stamp_passed(ct->e[i].qexp_ms, now_ms))) {
            uint32_t next = ct->e[i].next;
            if (ct->e[i].expiry <= now) {
                ct_report(ct, i, NS_EV_EXPIRED, now);
                ct_delete(ct, i);
                done++;
            }
            i = next;
        }
    }
    return done;
}

int ct_port_full(struct ct_table *ct, uint16_t in_port, uint64_t now)
{
    if (!ct->port_count || ct->port_count[in_port] < ct->per_port)
        return 0;
    ct_reclaim_expired(ct, now, UINT32_MAX);   /* so that the count is exact */
    return ct->port_count[in_port] >= ct->per_port;
}
