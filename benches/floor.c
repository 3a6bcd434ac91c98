/*
 * The libfuse floor of benches/fuse_latency.rs: the least a correct
 * per-reader FUSE file can cost, served by libfuse 3's own multi-threaded
 * loop, to cross-check the floor the bench serves with fuser.
 *
 * One regular file, "file", of LEN bytes whose first line names the
 * reading process (so no two readers may share its content), opened with
 * direct I/O and no flush; entries and attributes are cached for 1 s, as
 * proclens caches its virtual files'. Every request is answered from the
 * request itself: nothing is kept between OPEN and READ.
 *
 * Build: cc -O2 floor.c $(pkg-config --cflags --libs fuse3)
 * Run:   floor MOUNTPOINT   (foreground; SIGTERM unmounts)
 */
#define FUSE_USE_VERSION 312
#include <errno.h>
#include <fuse_lowlevel.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define LEN 1500
#define FILE_INO 2

static void fill_attr(fuse_ino_t ino, struct stat *st)
{
	memset(st, 0, sizeof(*st));
	st->st_ino = ino;
	st->st_nlink = 1;
	if (ino == FUSE_ROOT_ID) {
		st->st_mode = S_IFDIR | 0555;
	} else {
		st->st_mode = S_IFREG | 0444;
		st->st_size = LEN;
	}
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param e;

	if (parent != FUSE_ROOT_ID || strcmp(name, "file") != 0) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	memset(&e, 0, sizeof(e));
	e.ino = FILE_INO;
	e.entry_timeout = 1.0;
	e.attr_timeout = 1.0;
	fill_attr(FILE_INO, &e.attr);
	fuse_reply_entry(req, &e);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct stat st;

	(void)fi;
	if (ino != FUSE_ROOT_ID && ino != FILE_INO) {
		fuse_reply_err(req, ENOENT);
		return;
	}
	fill_attr(ino, &st);
	fuse_reply_attr(req, &st, 1.0);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	if (ino != FILE_INO) {
		fuse_reply_err(req, EISDIR);
		return;
	}
	fi->direct_io = 1;
	fi->noflush = 1;
	fuse_reply_open(req, fi);
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	char content[LEN];
	int head;

	(void)ino;
	(void)fi;
	if (off < 0 || off >= LEN) {
		fuse_reply_buf(req, NULL, 0);
		return;
	}
	head = snprintf(content, sizeof(content), "reader %d\n",
			(int)fuse_req_ctx(req)->pid);
	memset(content + head, '.', LEN - head - 1);
	content[LEN - 1] = '\n';
	if (size > (size_t)(LEN - off))
		size = LEN - off;
	fuse_reply_buf(req, content + off, size);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops ops = {
	.lookup = op_lookup,
	.getattr = op_getattr,
	.open = op_open,
	.read = op_read,
	.release = op_release,
};

int main(int argc, char *argv[])
{
	char *opts[] = { argv[0], "-o", "allow_other,ro" };
	struct fuse_args args = FUSE_ARGS_INIT(3, opts);
	struct fuse_loop_config *loop;
	struct fuse_session *se;
	int ret;

	if (argc != 2) {
		fprintf(stderr, "usage: %s MOUNTPOINT\n", argv[0]);
		return 2;
	}
	se = fuse_session_new(&args, &ops, sizeof(ops), NULL);
	if (se == NULL)
		return 1;
	if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, argv[1]) != 0) {
		fuse_session_destroy(se);
		return 1;
	}
	/* As proclens serves: one cloned /dev/fuse descriptor per thread. */
	loop = fuse_loop_cfg_create();
	fuse_loop_cfg_set_clone_fd(loop, 1);
	fuse_loop_cfg_set_max_threads(loop, 4);
	ret = fuse_session_loop_mt(se, loop);
	fuse_loop_cfg_destroy(loop);
	fuse_session_unmount(se);
	fuse_remove_signal_handlers(se);
	fuse_session_destroy(se);
	return ret == 0 ? 0 : 1;
}
