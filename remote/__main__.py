import sys

from cli.remote_main import main

sys.exit(main())
