"""Running the whole chain: the plan (:mod:`.plan`) and the single-machine runner (:mod:`.runner`)."""
