import sys

from release_orchestrator.events.setup import main

sys.exit(main())
