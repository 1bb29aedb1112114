import uvloop

from loyalty.main import main

uvloop.run(main())
