"""What a service process does to hold less memory at idle (issue 19): development-only modules and
the host's MIME files kept out, the source lines startup read dropped, free C heap given back."""

from __future__ import annotations

import linecache
import platform
import subprocess
import sys

from keyway_shared.service import runner


def test_a_service_process_loads_no_greenlet_and_no_host_mime_files() -> None:
    code = (
        "import keyway_shared.service_process, mimetypes, sys\n"
        "import structlog\n"
        "structlog.get_logger().info\n"
        "import auth_gateway.app\n"
        "assert sys.modules.get('greenlet') is None, 'greenlet loaded'\n"
        "assert mimetypes.knownfiles == []\n"
        "assert mimetypes.guess_type('a.json')[0] == 'application/json'  # Python's own table stays\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_startup_drops_the_source_files_linecache_read_and_keeps_generated_source() -> None:
    linecache.getline(runner.__file__, 1)
    generated = "<attrs generated methods test.Example>"
    linecache.cache[generated] = (10, None, ["def f():\n", "    pass\n"], generated)
    try:
        runner._drop_source_lines()
        assert runner.__file__ not in linecache.cache
        assert linecache.getline(generated, 1) == "def f():\n"
        assert linecache.getline(runner.__file__, 1)  # read again when a traceback wants it
    finally:
        linecache.cache.pop(generated, None)


def test_free_heap_goes_back_where_glibc_is() -> None:
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert runner.release_free_heap() is glibc
