"""Parts of the loop-efficacy benchmark (``bench/loop_efficacy.py``): a plant-time simulation that drives
edgeloop's real decision code in-process. ``releases`` trains, gates and describes models; ``fleet`` is the
devices (predict, upload filter, drift, shadow check, watch); ``policies`` the four ways to run a fleet;
``run`` one (seed, drift, policy) run; ``measures`` what is counted. Only transport is modelled: a release
or a runner policy reaches a device at the next plant hour.
"""
