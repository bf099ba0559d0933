import sys

from cli.provision_main import main

sys.exit(main())
