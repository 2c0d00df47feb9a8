#!/usr/bin/env python3
"""Checks reStructuredText files with docutils, failing on any warning.

Sphinx's own directives used by the kernel's Documentation/ (toctree) are accepted as they
are; everything else must be plain, valid reStructuredText.
"""
import sys

import docutils.core
from docutils.parsers.rst import Directive, directives


class Accepted(Directive):
    has_content = True
    optional_arguments = 1
    final_argument_whitespace = True
    option_spec = {"maxdepth": directives.unchanged, "caption": directives.unchanged}

    def run(self):
        return []


directives.register_directive("toctree", Accepted)
bad = 0
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            docutils.core.publish_string(
                f.read(), source_path=path, writer_name="null",
                settings_overrides={"halt_level": 2, "report_level": 2})
    except docutils.utils.SystemMessage as e:
        print(e)
        bad += 1
sys.exit(1 if bad else 0)
